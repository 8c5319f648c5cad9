"""zoo-sample: images from prompts with a trained Parti run (KV-cached, guided, reranked).

    zoo-sample --model_dir=runs/demo/parti --prompt="a red circle at the top" \
        --prompt="two blue squares" --num_samples=4 --output_dir=samples
    zoo-sample --model_dir=runs/parti --prompts_file=partiprompts \
        --max_prompts=32 --scorer=contrastive_scorer \
        --gin_bindings="contrastive_scorer.model_dir='runs/contrastive'"

Sampling settings: the flags given, else the run's recorded ones (sampling.json in the run
directory, measured by zoo-demo), else the defaults (temperature 1, guidance 1.2); the settings
used are printed at start. Prompts come from --prompt (repeatable) and/or --prompts_file: a TSV
with a `Prompt` column (PartiPrompts; Category and Challenge are kept) or a text file with one
prompt per line. Decode steps read the weights in bfloat16 by default (--weights; measured
1.6x faster than float32 on a CPU, bench/RESULTS.md), printed at start. Writes
`images/p0000_s0.png ...` (each prompt's samples best first when a scorer reranks them),
`samples.jsonl` (one line per prompt: text, files, scores) and a gallery `index.html` into
--output_dir (default: <model_dir>/samples). Same --seed, same images: sample
s of prompt p depends only on (seed, p, s), whatever --batch_size, and whatever the
distribution:

    zoo-sample --model_dir=runs/parti_3b --gin_file=gin/mesh/parti_3b_model4.gin ...
    zoo-sample --model_dir=runs/demo/parti --virtual_devices=2 --mesh=batch:2 ...

--strategy/--mesh (and the gin/mesh/*.gin files) work as in zoo-train: the model is built with
its weights sharded by the layout rules and the prompts are spread over the batch axis (a
batch is padded to a multiple of it). A DTensor mesh runs bfloat16 weights through TensorFlow's
matmul rather than zoo's fused op, so its images can differ slightly from one device's unless
--weights=float32 (docs/scaling.md).
"""

import os

from absl import flags

from zoo.tools import common

# Importing zoo.distribute (no TF) registers `mesh_layout` with gin before the gin files are
# parsed (gin/mesh/*.gin bind it).
from zoo.distribute import flags as distribute_flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_multi_string("prompt", [], "A prompt (repeatable).")
    flags.DEFINE_string("prompts_file", None, "A .tsv with a Prompt column, a .txt with one prompt "
                        "per line, or partiprompts (the PartiPrompts set zoo ships).")
    flags.DEFINE_integer("max_prompts", None, "Use at most this many prompts of --prompts_file "
                         "(a category-balanced subset for PartiPrompts).")
    flags.DEFINE_string("output_dir", None, "Where to write PNGs, samples.jsonl and index.html "
                        "(default: <model_dir>/samples).")
    flags.DEFINE_integer("num_samples", 4, "Samples per prompt (Parti reranks 16).")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
    flags.DEFINE_string("scorer", None, "Registered scorer that reranks each prompt's samples, "
                        "e.g. contrastive_scorer (configure it with --gin_bindings).")
    flags.DEFINE_string("upsampler_dir", None, "A super-resolution run applied to the images.")
    flags.DEFINE_integer("step", None, "Checkpoint step to load (default: the newest).")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    common.define_sampling_flags()
    common.define_gin_flags()
    distribute_flags.define()  # --strategy, --mesh, --virtual_devices, ...


def main(argv):
    distribute_flags.set_virtual_devices_from_flags()  # before anything runs a TF op
    common.setup(argv)
    from zoo.eval.samples import sample_run
    rows, output_dir, _ = sample_run(
        FLAGS.model_dir, FLAGS.prompt, FLAGS.prompts_file, FLAGS.max_prompts, FLAGS.output_dir,
        num_samples=FLAGS.num_samples, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
        temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
        guidance_scale=FLAGS.guidance_scale, xla=FLAGS.xla, weights=FLAGS.weights,
        jacobi_window=FLAGS.jacobi_window, scorer=FLAGS.scorer,
        upsampler_dir=FLAGS.upsampler_dir, step=FLAGS.step,
        distribution=distribute_flags.from_flags(), progress=FLAGS.progress)
    print(f"zoo-sample: wrote {len(rows) * FLAGS.num_samples} images for {len(rows)} prompts "
          f"to {output_dir} (gallery: {os.path.join(output_dir, 'index.html')})")


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
