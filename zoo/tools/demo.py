"""zoo-demo: the whole Parti pipeline on the built-in shapes data, on a CPU, with no download.

    zoo-demo --model_dir=runs/demo

Stages, one line each (every stage resumes: run the same command again after an interruption
and it continues where it stopped; a finished stage is skipped):

  1. text tokenizer   SentencePiece trained on the shapes captions      -> spm/spm.model
  2. image tokenizer  ViT-VQGAN (tiny) on shapes images                  -> tokenizer/
  3. reranker         contrastive dual encoder on shapes image-captions  -> contrastive/
  4. transformer      Parti (tiny), targets from the frozen tokenizer     -> parti/
  5. evaluation       samples for held-out captions, reranked, checked   -> eval/ (index.html)

Each training stage is an ordinary `zoo-train` run from a gin file in gin/runs/ (the files
named in STAGES), so anything the demo does can be rerun, changed or scaled with the normal
tools. `--gin_file` and `--gin_bindings` apply to every stage after its own gin file (e.g.
`--gin_file=data/synthetic_shapes_easy.gin`, `--gin_bindings="train.steps = 100"`);
`--stages` runs a subset.
"""

import dataclasses
import os
import sys
import time
from typing import Callable, List

from absl import flags

from zoo.errors import ZooError
from zoo.tools import common

common.define_gin_flags()
flags.DEFINE_list("stages", None, "Stages to run (default: all): spm, tokenizer, contrastive, "
                  "parti, eval.")
flags.DEFINE_integer("num_prompts", 64, "Held-out shapes captions to sample in the eval stage.")
# Parti draws 16 samples per prompt and keeps the reranker's first. On the demo's Parti (128 held-
# out captions, bench/RESULTS.md): 4 samples -> 68.8% of first picks accepted, 8 -> 74.2%; 8 cost
# about 20 s more in the eval stage than 4.
flags.DEFINE_integer("num_samples", 8, "Samples per prompt (reranked by the contrastive scorer).")
flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale for the eval stage "
                   "(default: the sampler's, Parti's 1.2 unless the demo gin says otherwise).")
# Measured on the demo's Parti (bench/RESULTS.md, "The demo"; 256 held-out captions x 4, guidance
# 1.2): temperature 0.5 -> 51.6% of all samples and 66.4% of the reranked first picks pass the
# shapes checker, 1.0 -> 41.8% / 61.7%. A tiny model trained for minutes spreads probability
# over wrong codes; a cooler softmax keeps the samples on its best guesses.
flags.DEFINE_float("temperature", 0.5, "Sampling temperature for the eval stage (0 = greedy; "
                   "the sampler's own default is 1.0).")
flags.DEFINE_bool("quick", False, "Smoke test: a few steps per stage and a tiny eval (for "
                  "tests; the results mean nothing).")
FLAGS = flags.FLAGS

# The shapes captions use ~45 distinct words. On so little text SentencePiece's unigram model
# supports at most 58 pieces, mostly single letters ("green" -> _ g re en, "red" -> _ re d), so
# the text encoder has to learn words from letter pieces it shares across words. BPE keeps every
# word one piece ("_green", "_red") at any vocabulary size.
SPM_VOCAB = 256
SPM_MODEL_TYPE = "bpe"


@dataclasses.dataclass
class Stage:
    name: str
    title: str
    run: Callable[["Demo"], str]  # returns a one-line result


class Demo:
    """Runs the stages into one model directory."""

    def __init__(self, model_dir: str, gin_files: List[str], bindings: List[str], quick: bool):
        self.model_dir = os.path.abspath(model_dir)
        self.gin_files = list(gin_files)
        self.bindings = list(bindings)
        self.quick = quick

    def path(self, *parts) -> str:
        return os.path.join(self.model_dir, *parts)

    # -- stages ------------------------------------------------------------------------------

    def spm(self) -> str:
        out = self.path("spm", "spm.model")
        if os.path.exists(out):
            return f"{out} (exists)"
        from zoo.data import pipeline
        from zoo.tokenizers.spm_training import train_sentencepiece
        texts = list(pipeline.captions("synthetic_shapes", "train",
                                       max_sentences=2000 if self.quick else 20000))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        train_sentencepiece(texts, out, vocab_size=SPM_VOCAB, model_type=SPM_MODEL_TYPE,
                            shrink_to_fit=True)
        return out

    def train_stage(self, gin_file: str, subdir: str, extra: List[str]) -> str:
        from zoo import config
        from zoo.train import loop
        bindings = list(extra) + self.bindings
        if self.quick:
            bindings += ["train.steps = 3", "train.checkpoint_every = 3",
                         "train.summary_every = 1", "train.image_summary_every = 3"]
        config.parse([gin_file] + self.gin_files, bindings)
        result = loop.train(model_dir=self.path(subdir))
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        return (f"step {result.step}" + (f", loss {losses}" if losses else "")
                + f" -> {self.path(subdir)}")

    def macros(self) -> List[str]:
        return [f"SPM_MODEL = '{self.path('spm', 'spm.model')}'",
                f"TOKENIZER_DIR = '{self.path('tokenizer')}'"]

    def tokenizer(self) -> str:
        return self.train_stage("runs/demo_tokenizer.gin", "tokenizer", [])

    def contrastive(self) -> str:
        return self.train_stage("runs/demo_contrastive.gin", "contrastive", self.macros())

    def parti(self) -> str:
        return self.train_stage("runs/demo_parti.gin", "parti", self.macros())

    def eval(self) -> str:
        from zoo.tools.eval import run_eval
        results = run_eval(
            model_dir=self.path("parti"), prompts="shapes",
            output_dir=self.path("eval"),
            num_prompts=2 if self.quick else FLAGS.num_prompts,
            num_samples=1 if self.quick else FLAGS.num_samples,
            scorer_dir=self.path("contrastive"), guidance_scale=FLAGS.guidance_scale,
            temperature=FLAGS.temperature,
            grid_png=self.path("eval", "grid.png"))
        shapes = results.get("shapes", {})
        parts = []
        if shapes.get("acceptance") is not None:
            parts.append(f"shapes checker acceptance {shapes['acceptance']:.1%} of all samples")
        if shapes.get("acceptance_top1") is not None:
            parts.append(f"{shapes['acceptance_top1']:.1%} of the reranked first picks")
        parts.append(f"gallery {self.path('eval', 'index.html')}")
        return ", ".join(parts)


STAGES = [
    Stage("spm", "text tokenizer (SentencePiece)", Demo.spm),
    Stage("tokenizer", "image tokenizer (ViT-VQGAN)", Demo.tokenizer),
    Stage("contrastive", "reranker (contrastive dual encoder)", Demo.contrastive),
    Stage("parti", "transformer (Parti)", Demo.parti),
    Stage("eval", "samples + evaluation", Demo.eval),
]


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def main(argv):
    common.setup(argv, parse_gin=False)
    names = [s.name for s in STAGES]
    wanted = FLAGS.stages or names
    for w in wanted:
        if w not in names:
            from zoo.errors import suggest
            raise ZooError(f"unknown stage {w!r}; {suggest(w, names, what='stage')}")
    # Extra gin files and bindings are validated up front, before any stage runs.
    from zoo import config
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
    demo = Demo(FLAGS.model_dir or "runs/demo", FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.quick)
    print(f"zoo-demo: {len(wanted)} stages into {demo.model_dir}", flush=True)
    t0 = time.time()
    chosen = [s for s in STAGES if s.name in wanted]
    for i, stage in enumerate(chosen, 1):
        ts = time.time()
        print(f"[{i}/{len(chosen)}] {stage.title} ...", flush=True)
        result = stage.run(demo)
        print(f"[{i}/{len(chosen)}] {stage.title}: {result} ({_fmt_time(time.time() - ts)})",
              flush=True)
    print(f"zoo-demo: done in {_fmt_time(time.time() - t0)}; results in {demo.model_dir} "
          f"(open {demo.path('eval', 'index.html')}; TensorBoard logs under */train)",
          flush=True)
    sys.stdout.flush()


def run():
    common.run(main)


if __name__ == "__main__":
    run()
