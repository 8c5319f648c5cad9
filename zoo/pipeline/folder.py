"""The folder recipe (zoo-demo --data=FOLDER): every stage on your own image-caption pairs.

  1. text tokenizer   SentencePiece (BPE) sized to the captions of the train split
  2. image tokenizer  ViT-VQGAN (tiny) at 32 or 64 px (the images' native size) -> 8x8 codes
  3. reranker         contrastive dual encoder (reranks samples, judges them)
  4. transformer      Parti (tiny), targets from the frozen tokenizer
  5. sampling         a small grid of settings judged by caption following -> parti/sampling.json
  6. evaluation       samples for the held-out captions; tokenizer PSNR, reranker retrieval,
                      caption following, FID/KID against the held-out images -> eval/

Stages 2-4 are `zoo-train` runs of gin/runs/folder_{tokenizer,contrastive,parti}.gin with the
folder in DATA_DIR; stage 6 is `zoo-eval --prompts=heldout --reference_dir=heldout`. Every stage
trains on the folder's `train` split only (image_caption_folder: the folder's own test/ or
validation/ subfolder, else a hash-chosen 5% of the files, is held out).

CPU sizes follow from the folder (`plan_folder`): 32 px images when their median short side is
at most 48 px, else 64 px, with patches of 1/8 of the side (8x8 codes either way, so every stage
costs the same at both sizes); a vocabulary of about 1.5 pieces per distinct caption word; a
text length that fits the longest training caption. With ~1-3k pairs the whole run takes about
the shapes demo's time on a 2-core CPU. `preset='gpu256'` (gin/runs/folder_gpu256.gin) uses
Parti's sizes at 256 px instead.
"""

import dataclasses
import json
import os
import statistics
from typing import Dict, List, Optional

from zoo.errors import ZooError
from zoo.pipeline import sampling_grid
from zoo.pipeline.stages import (QUICK_BINDINGS, Pipeline, Stage, command_line, eval_stage,
                                 train_command, train_stage)

MIN_PAIRS = 100
PRESETS = {"gpu256": "runs/folder_gpu256.gin"}
DATA_GIN = "runs/folder_data.gin"
SPM_MODEL_TYPE = "bpe"
GRID_PROMPTS = 32
SIZE_SAMPLE = 500  # images whose sizes decide the image size


@dataclasses.dataclass
class FolderPlan:
    """What zoo-demo decided from a folder (recorded in pipeline.json)."""

    data: str
    splits: Dict[str, int]
    heldout_split: str
    native_size: int
    image_size: int
    patch_size: int
    vocab_size: int
    skipped: str = ""

    def describe(self) -> str:
        parts = ", ".join(f"{n} {s}" + (" (held out)" if s == self.heldout_split else "")
                          for s, n in self.splits.items())
        return (f"{parts}; median short side {self.native_size} px -> {self.image_size} px "
                f"images, {self.patch_size} px patches, {self.vocab_size} SentencePiece pieces")


def check_data_path(data: str) -> str:
    path = os.path.abspath(os.path.expanduser(data))
    if os.path.isfile(path):
        raise ZooError(f"--data {path} is a file, not a folder; give the folder holding the "
                       f"images and metadata.jsonl (or metadata.csv)")
    if not os.path.isdir(path):
        raise ZooError(f"--data {path} does not exist; give a folder of images with a "
                       f"metadata.jsonl (or metadata.csv) holding file_name and text columns")
    return path


def build_dataset(data: str, gin_files: List[str], bindings: List[str]):
    """The folder as every stage sees it (runs/folder_data.gin, then the user's gin)."""
    from zoo import config
    from zoo.registry import DATASETS
    config.parse([DATA_GIN] + list(gin_files), [f"DATA_DIR = '{data}'"] + list(bindings),
                 finalize=False)
    from zoo.data.pipeline import one_line
    try:
        return DATASETS.create("image_caption_folder")
    except ZooError as e:
        raise one_line(e) from None


def _native_size(rows) -> int:
    from PIL import Image
    sides = []
    step = max(1, len(rows) // SIZE_SAMPLE)
    for r in rows[::step]:
        with Image.open(r["path"]) as im:
            sides.append(min(im.size))
    return int(statistics.median(sides))


def _vocab_size(captions) -> int:
    words = {w for c in captions for w in c.lower().split()}
    size = -(-int(1.5 * len(words)) // 64) * 64
    return int(min(16000, max(64, size)))


def plan_folder(data: str, gin_files: List[str], bindings: List[str], quick: bool = False):
    """(FolderPlan, dataset): reads the folder, checks it is usable, and picks the CPU sizes
    (module docstring)."""
    dataset = build_dataset(data, gin_files, bindings)
    held = dataset.heldout_split()
    splits = {s: dataset.num_examples(s) for s in dataset.splits()}
    usable = sum(splits.values())
    skipped = dataset.report.details() if dataset.report.num_skipped else ""
    if usable < MIN_PAIRS and not quick:
        raise ZooError(f"{data} has only {usable} usable image-caption pairs"
                       + (f" ({skipped})" if skipped else "") + f"; zoo-demo --data needs at "
                       f"least {MIN_PAIRS} to train every stage and hold out captions to judge "
                       f"it (--quick runs a smoke test with fewer)")
    if "train" not in splits:
        raise ZooError(f"{data} has no training images: everything is in its {held}/ folder")
    native = _native_size(dataset.rows["train"])
    image_size = 32 if native <= 48 else 64
    plan = FolderPlan(data=data, splits=splits, heldout_split=held, native_size=native,
                      image_size=image_size, patch_size=image_size // 8,
                      vocab_size=_vocab_size(dataset.captions("train")), skipped=skipped)
    return plan, dataset


def text_length(spm_model: str, captions) -> int:
    """Tokens of the longest caption (+ end of sequence), rounded up to a multiple of 8."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=spm_model)
    longest = max(len(sp.encode(c)) for c in captions) + 1
    return int(min(128, max(8, -(-longest // 8) * 8)))


class FolderDemo:
    """Builds the stages of zoo-demo --data=FOLDER into `model_dir`."""

    def __init__(self, data: str, model_dir: str, gin_files: List[str], bindings: List[str],
                 quick: bool = False, preset: Optional[str] = None, num_prompts: int = 64,
                 num_samples: int = 4, temperature: Optional[float] = None,
                 guidance_scale: Optional[float] = None):
        if preset is not None and preset not in PRESETS:
            from zoo.errors import suggest
            raise ZooError(f"unknown preset {preset!r}; {suggest(preset, list(PRESETS), 'preset')}")
        self.data = check_data_path(data)
        self.model_dir = os.path.abspath(model_dir)
        self.gin_files = ([PRESETS[preset]] if preset else []) + list(gin_files)
        self.bindings = list(bindings)
        self.quick = quick
        self.preset = preset
        self.num_prompts = 4 if quick else num_prompts
        self.num_samples = 2 if quick else num_samples
        self.temperature = temperature
        self.guidance_scale = guidance_scale
        self.plan, self.dataset = plan_folder(self.data, self.gin_files, self.bindings, quick)
        self._text_length = None

    def path(self, *parts) -> str:
        return os.path.join(self.model_dir, *parts)

    # -- the stages' settings ----------------------------------------------------------------

    def spm_path(self) -> str:
        return self.path("spm", "spm.model")

    def sizes(self, *names) -> List[str]:
        """Bindings of the sizes picked from the folder (none with a preset: it sets them)."""
        if self.preset:
            return []
        p = self.plan
        values = {"IMAGE_SIZE": p.image_size, "PATCH_SIZE": p.patch_size,
                  "CONTRASTIVE_PATCH": p.image_size // 4}
        return [f"{name} = {values[name]}" for name in names]

    def text_length(self) -> int:
        if self._text_length is None:
            self._text_length = text_length(self.spm_path(), self.dataset.captions("train"))
        return self._text_length

    def training(self, name, title, gin_file, macros) -> Stage:
        files = [gin_file] + self.gin_files
        data = [f"DATA_DIR = '{self.data}'"]

        def run():
            shown = data + macros() + self.bindings
            return train_stage(files, self.path(name),
                               shown + (list(QUICK_BINDINGS) if self.quick else []))
        return Stage(name, title, run, command=lambda: train_command(
            files, self.path(name), data + macros() + self.bindings))

    def _macros(self, sizes=(), spm=False, tokenizer=False, text=False):
        def macros():
            out = self.sizes(*sizes)
            if spm:
                out.append(f"SPM_MODEL = '{self.spm_path()}'")
            if tokenizer:
                out.append(f"TOKENIZER_DIR = '{self.path('tokenizer')}'")
            if text:  # known once the SentencePiece model exists
                out.append(f"TEXT_LENGTH = {self.text_length()}")
            return out
        return macros

    # -- stages ------------------------------------------------------------------------------

    def spm(self) -> str:
        out = self.spm_path()
        if os.path.exists(out):
            return f"{out} (exists)"
        from zoo.tokenizers.spm_training import train_sentencepiece
        os.makedirs(os.path.dirname(out), exist_ok=True)
        train_sentencepiece(list(self.dataset.captions("train")), out,
                            vocab_size=self.plan.vocab_size, model_type=SPM_MODEL_TYPE,
                            shrink_to_fit=True)
        import sentencepiece
        pieces = sentencepiece.SentencePieceProcessor(model_file=out).get_piece_size()
        # What the model was made from, as the training stages' run.json say for theirs.
        record = {"dataset": "image_caption_folder", "data": self.data, "split": "train",
                  "captions": self.plan.splits["train"], "pieces": pieces,
                  "model_type": SPM_MODEL_TYPE}
        with open(os.path.join(os.path.dirname(out), "spm.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        return f"{pieces} pieces from the train split's captions -> {out}"

    def sampling(self) -> str:
        from zoo.eval.heldout import heldout_prompts, run_dataset
        from zoo.models import sampling_settings
        from zoo.registry import SCORERS
        parti = self.path("parti")
        if os.path.isfile(sampling_settings.path_of(parti)):
            return f"{sampling_settings.path_of(parti)} (exists)"
        prompts = heldout_prompts(run_dataset(parti), limit=2 if self.quick else GRID_PROMPTS)
        if len(prompts) < 2:
            return "skipped: fewer than 2 distinct held-out captions to compare"
        scorer = SCORERS.create("contrastive_scorer", model_dir=self.path("contrastive"))
        samples = 2
        best, table = sampling_grid.choose_settings(
            parti, prompts, sampling_grid.following_judge(scorer), num_samples=samples,
            quick=self.quick)
        sampling_grid.record(parti, best, table, "caption following under the reranker",
                             prompts, samples)
        top = max(table, key=lambda r: r["score"])["score"]
        return (f"temperature {best['temperature']:g}, top-k {best['top_k']}, guidance "
                f"{best['guidance_scale']:g} (caption following {top:.1%} on {len(prompts)} "
                f"held-out captions x {samples}; {len(table)} settings) -> "
                f"{sampling_settings.path_of(parti)}")

    def describe(self, results) -> str:
        m = results["metrics"]
        parts = []
        if "caption_following" in m:
            parts.append(f"caption following {m['caption_following']:.1%} (chance "
                         f"{m['caption_following_chance']:.1%})")
        if "fid" in m:
            parts.append(f"FID {m['fid']:.4g}, KID {m.get('kid', float('nan')):.3g} "
                         f"({m['fid_feature_network']})")
        parts.append(f"gallery {self.path('eval', 'index.html')}")
        return ", ".join(parts)

    def pipeline(self) -> Pipeline:
        spm_args = ["--dataset=image_caption_folder", f"--gin_file={DATA_GIN}",
                    f"--gin_bindings=DATA_DIR = '{self.data}'", "--split=train",
                    f"--output={self.spm_path()}", f"--vocab_size={self.plan.vocab_size}",
                    f"--model_type={SPM_MODEL_TYPE}", "--shrink_to_fit"]
        stages = [
            Stage("spm", "text tokenizer (SentencePiece)", self.spm,
                  command=command_line("zoo-train-spm", spm_args)),
            self.training("tokenizer", "image tokenizer (ViT-VQGAN)", "runs/folder_tokenizer.gin",
                          self._macros(sizes=("IMAGE_SIZE", "PATCH_SIZE"))),
            self.training("contrastive", "reranker (contrastive dual encoder)",
                          "runs/folder_contrastive.gin",
                          self._macros(sizes=("IMAGE_SIZE", "CONTRASTIVE_PATCH"), spm=True,
                                       text=True)),
            self.training("parti", "transformer (Parti)", "runs/folder_parti.gin",
                          self._macros(spm=True, tokenizer=True, text=True)),
            Stage("sampling", "sampling settings (grid on held-out captions)", self.sampling),
            eval_stage("samples + evaluation on the held-out split", self.model_dir, "heldout",
                       self.describe, num_prompts=self.num_prompts,
                       num_samples=self.num_samples, reference="heldout",
                       temperature=self.temperature, guidance_scale=self.guidance_scale),
        ]
        record = {"recipe": "folder", "data": self.data, "preset": self.preset,
                  "plan": dataclasses.asdict(self.plan)}
        return Pipeline("zoo-demo", self.model_dir, stages, record=record)
