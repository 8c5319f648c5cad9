"""zoo-eval's library side: evaluate a trained Parti run on a prompt set.

    results = evaluate_run("runs/demo/parti", "shapes", num_samples=8,
                           scorer_dir="runs/demo/contrastive")
    results = evaluate_run("runs/mine/parti", "heldout", reference="heldout",
                           scorer_dir="runs/mine/contrastive")

Prompt sets: `shapes` (held-out captions of the run's own synthetic_shapes data), `heldout`
(the distinct captions of the held-out split of whatever dataset the run trained on, e.g. a
folder's), `partiprompts`, a .tsv with a Prompt column or a .txt with one prompt per line.
Sampling settings: the flags given, else those the run recorded (`sampling.json`, written by
zoo-demo's grid), else the sampler's defaults; the settings used are logged at start and
written into results.json.
"""

import logging
import os
from typing import Any, Dict, Optional

from zoo.errors import ZooError

log = logging.getLogger("zoo")

HELDOUT_NAMES = ("heldout", "held-out", "held_out")


def evaluate_run(model_dir: str, prompts: str = "shapes", output_dir: Optional[str] = None, *,
                 num_prompts: Optional[int] = None, num_samples: int = 4, seed: int = 0,
                 temperature: Optional[float] = None, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, guidance_scale: Optional[float] = None,
                 batch_size: int = 8, xla: bool = False, weights: Optional[str] = None,
                 jacobi_window: int = 0, scorer_dir: Optional[str] = None,
                 scorer: Optional[str] = None, reference=None,
                 feature_network: Optional[str] = None, step: Optional[int] = None,
                 grid_png: Optional[str] = None, extra_metrics: Optional[Dict] = None,
                 extra_info: Optional[Dict] = None, tool: str = "zoo-eval",
                 progress: bool = True) -> Dict[str, Any]:
    """Samples every prompt, scores, writes results.json / summary.txt / gallery / grid.png.

    Args:
        model_dir: a `parti` zoo-train run.
        prompts: the prompt set (module docstring). num_prompts: at most this many.
        output_dir: default <model_dir>/eval.
        num_samples, seed, batch_size, xla, weights, jacobi_window: sampling (see
            zoo.models.sampling.Sampler).
        temperature, top_k, top_p, guidance_scale: None takes the run's recorded setting,
            else the default (zoo.models.sampling_settings).
        scorer_dir / scorer: a contrastive run / a registered scorer: reranks each prompt's
            samples and gives the contrastive score and the caption-following rate.
        reference: real images for FID/KID: a folder, a .npz of statistics, an array, or
            'heldout' (the held-out images of the run's own dataset).
        feature_network: for FID/KID (None: the available one, see zoo.eval.fid).
        step: checkpoint step (default: newest). grid_png: where the grid goes ('' for none).
        extra_metrics / extra_info: merged into results.json (e.g. held-out figures).
        tool: the name used in the start-up line.
    """
    from zoo.eval import evaluate as evaluate_lib
    from zoo.models import sampling_settings

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
    if isinstance(reference, str) and reference.strip().lower() in HELDOUT_NAMES:
        reference = heldout_reference(model_dir)
    elif reference is not None:
        evaluate_lib.check_reference(reference)  # before the slow parts
    output_dir = output_dir or os.path.join(model_dir, "eval")
    prompt_set = load_prompt_set(prompts, num_prompts, model_dir)
    settings = sampling_settings.resolve(model_dir, temperature=temperature, top_k=top_k,
                                         top_p=top_p, guidance_scale=guidance_scale)
    log.info("%s: sampling settings: %s", tool, settings.describe())

    from zoo.models.sampling import TextToImage
    scorer_obj = None
    if scorer_dir or scorer:
        from zoo.registry import SCORERS
        scorer_obj = (SCORERS.create("contrastive_scorer", model_dir=scorer_dir) if scorer_dir
                      else SCORERS.create(scorer))
    pipe = TextToImage.from_model_dir(model_dir, step=step, scorer=scorer_obj,
                                      jit_compile=xla, weights=weights,
                                      jacobi_window=jacobi_window, **settings.values)
    info = {"model_dir": os.path.abspath(model_dir),
            "checkpoint_step": getattr(pipe.task, "restored_step", None),
            "prompts": prompts, **settings.values, "xla": xla,
            "weights": pipe.sampler.weights, "jacobi_window": pipe.sampler.jacobi_window,
            "sampling_settings_from": settings.sources,
            "scorer": (os.path.abspath(scorer_dir) if scorer_dir else scorer),
            **(extra_info or {})}
    if isinstance(prompts, str) and prompts.strip().lower() in HELDOUT_NAMES:
        extra_metrics = {**heldout_figures(model_dir, scorer_obj), **(extra_metrics or {})}
    metric = similarity = None
    if scorer_obj is not None:
        from zoo.eval.clip_score import ClipScore
        metric = ClipScore(scorer=scorer_obj).scores
        similarity = getattr(scorer_obj, "similarity", None)
    results = evaluate_lib.evaluate(
        pipe, prompt_set, output_dir, num_samples=num_samples, seed=seed,
        batch_size=batch_size, reference=reference, feature_network=feature_network,
        scorer=metric, similarity=similarity, extra_metrics=extra_metrics, info=info,
        progress=progress)
    if grid_png is None:
        grid_png = os.path.join(output_dir, "grid.png")
    if grid_png:
        from zoo.eval.grid import write_grid
        write_grid(grid_png, results["samples"], output_dir)
        results["grid"] = os.path.abspath(grid_png)
    return results


def heldout_figures(model_dir: str, scorer=None) -> Dict[str, Any]:
    """Figures of the other stages on the run's held-out split: the image tokenizer's
    reconstruction PSNR and, with a contrastive scorer, its caption retrieval accuracy on the
    real held-out pairs with its chance level."""
    from zoo.eval.heldout import heldout_examples, retrieval, run_dataset, tokenizer_psnr
    from zoo.train import run_info
    dataset = run_dataset(model_dir)
    config = (run_info.read(model_dir) or {}).get("task_config") or {}
    images, captions = heldout_examples(dataset, _image_size(config))
    out: Dict[str, Any] = {"heldout_images": len(captions)}
    if config.get("image_tokenizer_dir"):
        recon = tokenizer_psnr(config["image_tokenizer_dir"], images)
        out["tokenizer_psnr_db"] = recon["psnr"]
        out["tokenizer_codebook_usage"] = recon["codebook_usage"]
    if scorer is not None and hasattr(scorer, "embed_images") and len(set(captions)) > 1:
        found = retrieval(scorer, images, captions)
        out["retrieval_accuracy"] = found["accuracy"]
        out["retrieval_chance"] = found["chance"]
        out["retrieval_candidates"] = found["candidates"]
    return out


def heldout_reference(model_dir: str):
    """The held-out images of the run's own dataset at the run's image size (FID/KID)."""
    from zoo.eval.heldout import heldout_examples, run_dataset
    from zoo.train import run_info
    dataset = run_dataset(model_dir)
    if dataset is None:
        raise ZooError(f"{model_dir} records no dataset; pass --reference_dir=<folder>")
    config = (run_info.read(model_dir) or {}).get("task_config") or {}
    size = _image_size(config)
    images, _ = heldout_examples(dataset, size)
    if len(images) < 2:
        raise ZooError(f"{dataset!r}: FID/KID need at least 2 held-out images, got "
                       f"{len(images)}")
    return images


def _image_size(task_config) -> int:
    """The image size of a run: its own `image_size`, else its image tokenizer's."""
    size = task_config.get("image_size") or (
        task_config.get("image_tokenizer_options") or {}).get("image_size")
    if not size:
        raise ZooError("cannot tell the run's image size from its run.json")
    return int(size)


def load_prompt_set(spec: str, num_prompts: Optional[int], model_dir: str):
    """The prompts of `spec` for the run in `model_dir` (module docstring)."""
    from zoo.eval.prompts import SHAPES_NAMES, load_prompts
    if num_prompts is not None and num_prompts < 1:
        raise ZooError(f"--num_prompts must be at least 1, got {num_prompts}")
    name = spec.strip().lower() if isinstance(spec, str) else ""
    if name in SHAPES_NAMES or name in HELDOUT_NAMES:
        from zoo.eval.heldout import heldout_prompts, run_dataset
        dataset = run_dataset(model_dir) if os.path.isfile(
            os.path.join(model_dir, "run.json")) else None
        shapes = dataset is None or dataset.name == "synthetic_shapes"
        if name in SHAPES_NAMES and not shapes:
            raise ZooError(f"--prompts=shapes needs a run trained on synthetic_shapes; "
                           f"{model_dir} trained on {dataset!r} (use --prompts=heldout)")
        if shapes:  # caption meanings never trained on, from the run's seed and config
            seed = getattr(dataset, "seed", 0)
            return load_prompts("shapes", limit=num_prompts, seed=seed,
                                shapes_config=getattr(dataset, "config", None))
        return heldout_prompts(dataset, limit=num_prompts)
    return load_prompts(spec, limit=num_prompts)
