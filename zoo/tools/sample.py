"""zoo-sample: images from prompts with a trained Parti run (KV-cached, guided, reranked).

    zoo-sample --model_dir=runs/demo/parti --prompt="a red circle at the top" \
        --prompt="two blue squares" --num_samples=4 --output_dir=samples
    zoo-sample --model_dir=runs/parti --prompts_file=../shared/data/partiprompts/PartiPrompts.tsv \
        --max_prompts=32 --scorer=contrastive_scorer \
        --gin_bindings="contrastive_scorer.model_dir='runs/contrastive'"

Prompts come from --prompt (repeatable) and/or --prompts_file: a TSV with a `Prompt` column
(PartiPrompts; Category and Challenge are kept) or a text file with one prompt per line.
Writes `images/p0000_s0.png ...` (each prompt's samples best first when a scorer reranks
them), `samples.jsonl` (one line per prompt: text, files, scores) and a gallery `index.html`
into --output_dir (default: <model_dir>/samples). Same --seed, same images: sample s of prompt
p depends only on (seed, p, s), whatever --batch_size, and whatever the distribution:

    zoo-sample --model_dir=runs/parti_3b --gin_file=gin/mesh/parti_3b_model4.gin ...
    zoo-sample --model_dir=runs/demo/parti --virtual_devices=2 --mesh=batch:2 ...

--strategy/--mesh (and the gin/mesh/*.gin files) work as in zoo-train: the model is built with
its weights sharded by the layout rules and the prompts are spread over the batch axis (a
batch is padded to a multiple of it).
"""

import json
import os
import sys

from absl import flags

from zoo.tools import common

flags.DEFINE_multi_string("prompt", [], "A prompt (repeatable).")
flags.DEFINE_string("prompts_file", None, "A .tsv with a Prompt column (e.g. PartiPrompts at "
                    "../shared/data/partiprompts/PartiPrompts.tsv) or a .txt, one prompt per "
                    "line.")
flags.DEFINE_integer("max_prompts", None, "Use at most this many prompts of --prompts_file "
                     "(a category-balanced subset for PartiPrompts).")
flags.DEFINE_string("output_dir", None, "Where to write PNGs, samples.jsonl and index.html "
                    "(default: <model_dir>/samples).")
flags.DEFINE_integer("num_samples", 4, "Samples per prompt (Parti reranks 16).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely codes at each step (0 = all).")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1 = off).")
flags.DEFINE_float("guidance_scale", 1.2, "Classifier-free guidance scale (Parti: 1.2; 1 = "
                   "off).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
flags.DEFINE_bool("xla", False, "XLA-compile the decode loop: a slower start (compiling), "
                  "much faster steps for large models (XLA updates the KV cache in place; "
                  "without it every step copies the cache). See bench/RESULTS.md.")
flags.DEFINE_string("scorer", None, "Registered scorer that reranks each prompt's samples, "
                    "e.g. contrastive_scorer (configure it with --gin_bindings).")
flags.DEFINE_string("upsampler_dir", None, "A super-resolution run applied to the images.")
flags.DEFINE_integer("step", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
common.define_gin_flags()
# --strategy, --mesh, --virtual_devices, ...; importing zoo.distribute (no TF) also registers
# `mesh_layout` with gin before the gin files are parsed (gin/mesh/*.gin bind it).
from zoo.distribute import flags as distribute_flags  # noqa: E402

distribute_flags.define()
FLAGS = flags.FLAGS


def read_prompts(prompts, prompts_file=None, max_prompts=None):
    """[zoo.eval.prompts.Prompt] from flag values and/or a file."""
    from zoo.errors import ZooError
    from zoo.eval.prompts import Prompt, load_prompts
    out = [Prompt(text=p, source=f"--prompt #{i + 1}") for i, p in enumerate(prompts)]
    if prompts_file:
        if not os.path.isfile(prompts_file):
            raise ZooError(f"--prompts_file {prompts_file!r} does not exist")
        out += load_prompts(prompts_file, limit=max_prompts)
    if not out:
        raise ZooError("no prompts: give --prompt=\"a red circle\" (repeatable) or "
                       "--prompts_file=<.tsv or .txt>")
    for p in out:
        if not p.text.strip():
            raise ZooError(f"empty prompt ({p.source or 'prompt'}); every prompt needs text")
    return out


def write_samples(pipe, prompts, output_dir, num_samples, seed, batch_size, progress=True):
    """Generates every prompt's samples into `output_dir`; returns the rows written."""
    import numpy as np
    from PIL import Image

    from zoo.eval.gallery import GalleryEntry, write_gallery

    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(prompts), desc="sampling", unit="prompt", file=sys.stderr)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids = list(range(start, start + len(chunk)))
        images, scores = pipe([p.text for p in chunk], prompt_ids=ids,
                              num_samples=num_samples, seed=seed)
        for j, (i, p) in enumerate(zip(ids, chunk)):
            names = []
            for s in range(num_samples):
                name = os.path.join("images", f"p{i:04d}_s{s}.png")
                pixels = np.clip(np.round(images[j, s] * 255.0), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(output_dir, name))
                names.append(name)
            row = {"index": i, **p.to_json(), "prompt": p.text, "images": names}
            row.pop("text", None)
            if scores is not None:
                row["scores"] = [float(x) for x in scores[j]]
            rows.append(row)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    with open(os.path.join(output_dir, "samples.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    entries = [GalleryEntry(prompt=r["prompt"], images=r["images"], scores=r.get("scores"),
                            category=r.get("category"), challenge=r.get("challenge"))
               for r in rows]
    write_gallery(output_dir, entries, title="zoo-sample")
    return rows


def main(argv):
    distribute_flags.set_virtual_devices_from_flags()  # before anything runs a TF op
    common.setup(argv)
    from zoo.errors import ZooError
    from zoo.models.sampling import TextToImage
    if not FLAGS.model_dir:
        raise ZooError("--model_dir is required: the directory of a `parti` training run")
    if FLAGS.batch_size < 1:
        raise ZooError(f"--batch_size must be >= 1, got {FLAGS.batch_size}")
    prompts = read_prompts(FLAGS.prompt, FLAGS.prompts_file, FLAGS.max_prompts)
    pipe = TextToImage.from_model_dir(
        FLAGS.model_dir, step=FLAGS.step, upsampler_dir=FLAGS.upsampler_dir,
        scorer=FLAGS.scorer, temperature=FLAGS.temperature, top_k=FLAGS.top_k,
        top_p=FLAGS.top_p, guidance_scale=FLAGS.guidance_scale, jit_compile=FLAGS.xla,
        distribution=distribute_flags.from_flags())
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "samples")
    rows = write_samples(pipe, prompts, output_dir, FLAGS.num_samples, FLAGS.seed,
                         FLAGS.batch_size, progress=FLAGS.progress)
    print(f"zoo-sample: wrote {len(rows) * FLAGS.num_samples} images for {len(rows)} prompts "
          f"to {output_dir} (gallery: {os.path.join(output_dir, 'index.html')})")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
