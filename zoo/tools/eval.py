"""zoo-eval: generate images for a prompt set with a trained Parti run, score them, report.

    zoo-eval --model_dir=runs/demo/parti --prompts=shapes --num_prompts=64 \
        --output_dir=runs/demo/eval
    zoo-eval --model_dir=runs/parti --prompts=partiprompts --num_prompts=120 \
        --scorer_dir=runs/contrastive --reference_dir=data/coco_val_images \
        --output_dir=runs/parti/eval_p2

--prompts: `shapes` (held-out captions of the built-in shapes data), `partiprompts`
(../shared/data/partiprompts/PartiPrompts.tsv), a .tsv with a Prompt column, or a .txt with one
prompt per line. Reports, as they apply:
  - shapes checker acceptance, overall and per caption feature (shapes prompts);
  - contrastive agreement (mean cosine of images and prompts) with --scorer_dir / --scorer,
    which also reranks each prompt's samples;
  - FID against --reference_dir (a folder of images, or the .npz of statistics a previous run
    wrote), with the InceptionV3 feature network from a local Keras weights file;
  - per category and challenge tables for PartiPrompts.
Writes images/, samples.jsonl, results.json, summary.txt, index.html (the gallery) and
grid.png into --output_dir. Interrupted runs resume: the same command continues with the
prompts not yet generated.
"""

import inspect
import os
import sys
from typing import Any, Dict, Optional

from absl import flags

from zoo.errors import ZooError
from zoo.tools import common

FLAGS = flags.FLAGS
_FLAGS_DEFINED = False


def _define_flags():
    # Defined when the tool runs (not on import), so that zoo-demo can import run_eval
    # without its own flags clashing with these.
    global _FLAGS_DEFINED
    if _FLAGS_DEFINED:
        return
    _FLAGS_DEFINED = True
    flags.DEFINE_string("prompts", "shapes", "Prompt set: shapes, partiprompts, a .tsv with a "
                        "Prompt column or a .txt with one prompt per line.")
    flags.DEFINE_integer("num_prompts", None, "Use at most this many prompts (a category-"
                         "balanced subset; default: all, or 64 for shapes).")
    flags.DEFINE_string("output_dir", None, "Where to write images, results and the gallery "
                        "(default: <model_dir>/eval).")
    flags.DEFINE_string("reference_dir", None, "Reference images for FID (a folder, or a .npz "
                        "of statistics written by an earlier zoo-eval). No FID without it.")
    flags.DEFINE_string("feature_network", "inception_v3", "Registered feature network for "
                        "FID (inception_v3 needs ~/.keras/models/"
                        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5).")
    flags.DEFINE_integer("num_samples", 4, "Samples per prompt.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale (default "
                       "1.2, Parti's).")
    flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
    flags.DEFINE_integer("top_k", 0, "Keep the k most likely codes per step (0 = all).")
    flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1 = off).")
    flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
    flags.DEFINE_bool("xla", False, "XLA-compile the decode loop (as zoo-sample --xla): a "
                      "slower start (compiling), faster steps for large float32 models; no "
                      "faster for the bf16 demo model (bench/RESULTS.md).")
    flags.DEFINE_enum("weights", "auto", ["auto", "float32", "bfloat16", "int8"],
                      "Precision decode steps read the weights in (auto: the model's own; "
                      "int8: weight-only, per-column scales). See bench/RESULTS.md.")
    flags.DEFINE_integer("jacobi_window", 0, "0: one token per model call; L >= 2: "
                         "speculative Jacobi decoding with L draft tokens per call (same "
                         "distribution, fewer calls).")
    flags.DEFINE_string("scorer_dir", None, "A contrastive zoo-train run: reranks samples "
                        "and gives the contrastive agreement score.")
    flags.DEFINE_string("scorer", None, "A registered scorer name instead of --scorer_dir "
                        "(configured with --gin_bindings).")
    flags.DEFINE_integer("step", None, "Checkpoint step of --model_dir (default: newest).")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    common.define_gin_flags()


def run_eval(model_dir: str, prompts: str = "shapes", output_dir: Optional[str] = None, *,
             num_prompts: Optional[int] = None, num_samples: int = 4, seed: int = 0,
             guidance_scale: Optional[float] = None, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, batch_size: int = 8, xla: bool = False,
             weights: str = "auto", jacobi_window: int = 0,
             scorer_dir: Optional[str] = None, scorer: Optional[str] = None,
             reference_dir: Optional[str] = None, feature_network: str = "inception_v3",
             step: Optional[int] = None, grid_png: Optional[str] = None,
             progress: bool = True) -> Dict[str, Any]:
    """Everything zoo-eval does; returns the results dict (see zoo.eval.evaluate)."""
    from zoo.eval import evaluate as evaluate_lib

    if not model_dir:
        raise ZooError("--model_dir is required: the directory of a `parti` zoo-train run")
    if not os.path.isdir(model_dir):
        raise ZooError(f"--model_dir {model_dir!r} does not exist; pass the directory of a "
                       f"`parti` zoo-train run (e.g. runs/demo/parti from zoo-demo)")
    if scorer_dir and scorer:
        raise ZooError("give --scorer_dir or --scorer, not both")
    if scorer_dir and not os.path.isdir(scorer_dir):
        raise ZooError(f"--scorer_dir {scorer_dir!r} does not exist; pass a `contrastive` "
                       f"zoo-train run or leave it out")
    if reference_dir is not None:
        evaluate_lib._check_reference(reference_dir)  # before the slow parts
    output_dir = output_dir or os.path.join(model_dir, "eval")
    prompt_set = _load_prompt_set(prompts, num_prompts, model_dir)

    from zoo.models.sampling import TextToImage
    scorer_obj = None
    if scorer_dir:
        from zoo.registry import SCORERS
        scorer_obj = SCORERS.create("contrastive_scorer", model_dir=scorer_dir)
    elif scorer:
        from zoo.registry import SCORERS
        scorer_obj = SCORERS.create(scorer)
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, jit_compile=xla,
                    weights=weights, jacobi_window=jacobi_window)
    if guidance_scale is not None:
        settings["guidance_scale"] = guidance_scale
    pipe = TextToImage.from_model_dir(model_dir, step=step, scorer=scorer_obj, **settings)
    info = {"model_dir": os.path.abspath(model_dir),
            "checkpoint_step": getattr(pipe.task, "restored_step", None),
            "prompts": prompts, "guidance_scale": pipe.sampler.guidance_scale,
            "temperature": temperature, "top_k": top_k, "top_p": top_p, "xla": xla,
            "weights": weights, "jacobi_window": jacobi_window,
            "scorer": (os.path.abspath(scorer_dir) if scorer_dir else scorer)}
    metric = None
    if scorer_obj is not None:
        from zoo.eval.clip_score import ClipScore
        metric = ClipScore(scorer=scorer_obj).scores
    results = evaluate_lib.evaluate(
        pipe, prompt_set, output_dir, num_samples=num_samples, seed=seed,
        batch_size=batch_size, reference=reference_dir, feature_network=feature_network,
        scorer=metric, info=info, progress=progress)
    if grid_png is None:
        grid_png = os.path.join(output_dir, "grid.png")
    if grid_png:
        from zoo.eval.grid import write_grid
        write_grid(grid_png, results["samples"], output_dir)
        results["grid"] = os.path.abspath(grid_png)
    return results


def _load_prompt_set(spec, num_prompts, model_dir):
    from zoo.eval.prompts import SHAPES_NAMES, load_prompts
    if num_prompts is not None and num_prompts < 1:
        raise ZooError(f"--num_prompts must be at least 1, got {num_prompts}")
    if spec.strip().lower() in SHAPES_NAMES:
        seed, config = _shapes_data_of(model_dir)
        return load_prompts(spec, limit=num_prompts, seed=seed, shapes_config=config)
    return load_prompts(spec, limit=num_prompts)


def _shapes_data_of(model_dir):
    """(seed, ShapesConfig) of the shapes data a run trained on, so held-out means held out.

    The dataset's arguments are those in the run's task config (run.json) over the
    `synthetic_shapes.*` bindings of its operative_config.gin (e.g. from
    data/synthetic_shapes_easy.gin). Another dataset, or no record: the defaults.
    """
    from zoo.registry import DATASETS
    from zoo.train import run_info
    info = run_info.read(model_dir) or {}
    config = info.get("task_config") or {}
    if config.get("dataset", "synthetic_shapes") != "synthetic_shapes":
        return 0, None
    options = {**_operative_bindings(model_dir, "synthetic_shapes"),
               **dict(config.get("dataset_options") or {})}
    cls = DATASETS.get("synthetic_shapes")
    accepted = inspect.signature(cls.__init__).parameters
    # Arguments of other zoo versions (renamed or gone) do not change which captions exist.
    options = {k: v for k, v in options.items() if k in accepted}
    try:
        dataset = cls(**options)
    except (TypeError, ZooError) as e:
        raise ZooError(f"cannot rebuild the run's synthetic_shapes data from {model_dir} "
                       f"({e}); held-out prompts need it") from None
    return dataset.seed, dataset.config


def _operative_bindings(model_dir, name):
    """{argument: value} of literal `name.argument = value` bindings in operative_config.gin."""
    import gin
    from gin import config_parser
    path = os.path.join(model_dir, "operative_config.gin")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    try:
        for statement in config_parser.ConfigParser(
                text, gin.config.ParserDelegate(skip_unknown=True)):
            selector = getattr(statement, "selector", None)
            if selector and selector.split(".")[-1] == name and isinstance(
                    statement.value, (int, float, str, bool, list, tuple, type(None))):
                out[statement.arg_name] = statement.value
    except Exception as e:  # noqa: BLE001 -- a damaged file: say so, use the run.json only
        print(f"zoo-eval: warning: could not read {path} ({type(e).__name__}: {e})",
              file=sys.stderr)
    return out


def main(argv):
    common.setup(argv)
    results = run_eval(
        FLAGS.model_dir, FLAGS.prompts, FLAGS.output_dir, num_prompts=FLAGS.num_prompts,
        num_samples=FLAGS.num_samples, seed=FLAGS.seed, guidance_scale=FLAGS.guidance_scale,
        temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
        batch_size=FLAGS.batch_size, xla=FLAGS.xla, weights=FLAGS.weights,
        jacobi_window=FLAGS.jacobi_window, scorer_dir=FLAGS.scorer_dir,
        scorer=FLAGS.scorer, reference_dir=FLAGS.reference_dir,
        feature_network=FLAGS.feature_network, step=FLAGS.step, progress=FLAGS.progress)
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "eval")
    from zoo.eval.report import RESULTS_NAME, SUMMARY_NAME
    with open(os.path.join(output_dir, SUMMARY_NAME), encoding="utf-8") as f:
        sys.stdout.write(f.read())
    print(f"\nresults: {os.path.join(output_dir, RESULTS_NAME)}\n"
          f"gallery: {os.path.join(output_dir, 'index.html')}\n"
          f"grid:    {results.get('grid')}")
    sys.stdout.flush()


def run():
    _define_flags()
    common.run(main)


if __name__ == "__main__":
    run()
