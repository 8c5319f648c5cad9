"""The shapes recipe (zoo-demo without --data): every stage on the built-in synthetic_shapes data.

  1. text tokenizer   SentencePiece (BPE) on the shapes captions           -> spm/spm.model
  2. image tokenizer  ViT-VQGAN (tiny), 48x48 images -> 12x12 codes          -> tokenizer/
  3. reranker         contrastive dual encoder                             -> contrastive/
  4. transformer      Parti (tiny), targets from the frozen tokenizer        -> parti/
  5. sampling         a small grid of settings, judged by the shapes checker -> parti/sampling.json
  6. evaluation       samples for held-out captions, reranked, checked      -> eval/ (index.html)

Stages 2-4 are `zoo-train` runs of gin/runs/demo_{tokenizer,contrastive,parti}.gin.
"""

import os
from typing import List, Optional

from zoo.pipeline import sampling_grid
from zoo.pipeline.stages import (QUICK_BINDINGS, Pipeline, Stage, command_line, eval_stage,
                                 train_command, train_stage)

# The shapes captions use ~45 distinct words. On so little text SentencePiece's unigram model
# supports at most 58 pieces, mostly single letters ("green" -> _ g re en, "red" -> _ re d), so
# the text encoder has to learn words from letter pieces it shares across words. BPE keeps every
# word one piece ("_green", "_red") at any vocabulary size.
SPM_VOCAB = 256
SPM_MODEL_TYPE = "bpe"
SPM_SENTENCES = 20000
GRID_PROMPTS = 32  # held-out captions the sampling grid is measured on (2 samples each)


class ShapesDemo:
    """Builds the stages of the shapes demo into `model_dir`."""

    def __init__(self, model_dir: str, gin_files: List[str], bindings: List[str], quick: bool,
                 num_prompts: int = 64, num_samples: int = 8,
                 temperature: Optional[float] = None, guidance_scale: Optional[float] = None):
        self.model_dir = os.path.abspath(model_dir)
        self.gin_files = list(gin_files)
        self.bindings = list(bindings)
        self.quick = quick
        self.num_prompts = 2 if quick else num_prompts
        self.num_samples = 1 if quick else num_samples
        self.temperature = temperature
        self.guidance_scale = guidance_scale

    def path(self, *parts) -> str:
        return os.path.join(self.model_dir, *parts)

    def macros(self) -> List[str]:
        return [f"SPM_MODEL = '{self.path('spm', 'spm.model')}'",
                f"TOKENIZER_DIR = '{self.path('tokenizer')}'"]

    def training(self, name, title, gin_file, macros) -> Stage:
        files = [gin_file] + self.gin_files
        shown = macros + self.bindings
        bindings = shown + (list(QUICK_BINDINGS) if self.quick else [])
        return Stage(name, title, lambda: train_stage(files, self.path(name), bindings),
                     command=train_command(files, self.path(name), shown))

    def spm(self) -> str:
        out = self.path("spm", "spm.model")
        if os.path.exists(out):
            return f"{out} (exists)"
        from zoo.data import pipeline
        from zoo.tokenizers.spm_training import train_sentencepiece
        texts = list(pipeline.captions("synthetic_shapes", "train",
                                       max_sentences=2000 if self.quick else SPM_SENTENCES))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        train_sentencepiece(texts, out, vocab_size=SPM_VOCAB, model_type=SPM_MODEL_TYPE,
                            shrink_to_fit=True)
        return out

    def sampling(self) -> str:
        from zoo.eval.runner import load_prompt_set
        from zoo.models import sampling_settings
        parti = self.path("parti")
        if os.path.isfile(sampling_settings.path_of(parti)):
            return f"{sampling_settings.path_of(parti)} (exists)"
        count = 2 if self.quick else GRID_PROMPTS
        # Held-out captions after the evaluation's: the settings are not chosen on them.
        prompts = load_prompt_set("shapes", self.num_prompts + count, parti)[-count:]
        # 4 samples of 32 captions: with 2 (64 samples) temperatures 0.7 and 0.5 tied on the
        # demo's Parti (60.9% each; bench/RESULTS.md, "The demo").
        samples = 1 if self.quick else 4
        best, table = sampling_grid.choose_settings(parti, prompts, sampling_grid.shapes_judge,
                                                    num_samples=samples, quick=self.quick)
        sampling_grid.record(parti, best, table, "shapes checker acceptance", prompts,
                             samples)
        top = max(table, key=lambda r: r["score"])["score"]
        return (f"temperature {best['temperature']:g}, top-k {best['top_k']}, guidance "
                f"{best['guidance_scale']:g} ({top:.1%} of {len(prompts)} x {samples} samples "
                f"accepted; {len(table)} settings) -> {sampling_settings.path_of(parti)}")

    def describe(self, results) -> str:
        shapes = results.get("shapes", {})
        parts = []
        if shapes.get("acceptance") is not None:
            parts.append(f"shapes checker acceptance {shapes['acceptance']:.1%} of all samples")
        if shapes.get("acceptance_top1") is not None:
            parts.append(f"{shapes['acceptance_top1']:.1%} of the reranked first picks")
        parts.append(f"gallery {self.path('eval', 'index.html')}")
        return ", ".join(parts)

    def pipeline(self) -> Pipeline:
        spm_args = ["--dataset=synthetic_shapes", f"--output={self.path('spm', 'spm.model')}",
                    f"--vocab_size={SPM_VOCAB}", f"--model_type={SPM_MODEL_TYPE}",
                    f"--max_sentences={SPM_SENTENCES}", "--shrink_to_fit"]
        stages = [
            Stage("spm", "text tokenizer (SentencePiece)", self.spm,
                  command=command_line("zoo-train-spm", spm_args)),
            self.training("tokenizer", "image tokenizer (ViT-VQGAN)", "runs/demo_tokenizer.gin",
                          []),
            self.training("contrastive", "reranker (contrastive dual encoder)",
                          "runs/demo_contrastive.gin", self.macros()),
            self.training("parti", "transformer (Parti)", "runs/demo_parti.gin", self.macros()),
            Stage("sampling", "sampling settings (grid on held-out captions)", self.sampling),
            eval_stage("samples + evaluation", self.model_dir, "shapes", self.describe,
                       num_prompts=self.num_prompts, num_samples=self.num_samples,
                       temperature=self.temperature, guidance_scale=self.guidance_scale),
        ]
        return Pipeline("zoo-demo", self.model_dir, stages,
                        record={"recipe": "shapes", "data": "synthetic_shapes"})
