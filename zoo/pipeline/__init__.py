"""Multi-stage pipelines: every stage of Parti trained and judged into one model directory.

    from zoo.pipeline import run_demo
    run_demo(model_dir="runs/demo")                                  # built-in shapes data
    run_demo(model_dir="runs/mine", data="/data/my_images")          # your folder

The stage runner is `zoo.pipeline.stages`; the recipes are `zoo.pipeline.shapes` (the shapes
demo) and `zoo.pipeline.folder` (a folder of image-caption pairs); `zoo.pipeline.sampling_grid`
picks the sampling settings a run records. Each training stage is an ordinary zoo-train run of
a gin file in gin/runs/, printed as the command that reruns it alone.
"""

import os
from typing import List, Optional, Sequence

from zoo.pipeline.stages import Pipeline, fmt_time


def make_demo(model_dir: str, data: Optional[str] = None, *, gin_files: Sequence[str] = (),
              bindings: Sequence[str] = (), quick: bool = False, preset: Optional[str] = None,
              num_prompts: Optional[int] = None, num_samples: Optional[int] = None,
              temperature: Optional[float] = None,
              guidance_scale: Optional[float] = None) -> Pipeline:
    """The shapes demo (no `data`) or the folder recipe (`data`: the folder), not yet run."""
    from zoo.errors import ZooError
    options = dict(temperature=temperature, guidance_scale=guidance_scale)
    if num_prompts is not None:
        options["num_prompts"] = num_prompts
    if num_samples is not None:
        options["num_samples"] = num_samples
    if data is None:
        if preset is not None:
            raise ZooError("--preset needs --data (it sizes the folder recipe); the shapes "
                           "demo has one size")
        from zoo.pipeline.shapes import ShapesDemo
        return ShapesDemo(model_dir, list(gin_files), list(bindings), quick,
                          **options).pipeline()
    from zoo.pipeline.folder import FolderDemo
    return FolderDemo(data, model_dir, list(gin_files), list(bindings), quick=quick,
                      preset=preset, **options).pipeline()


def run_demo(model_dir: str = "runs/demo", data: Optional[str] = None, *,
             stages: Optional[List[str]] = None, print_fn=print, **options) -> dict:
    """Builds and runs the demo (see `make_demo`); prints each stage, the evaluation summary
    and where everything is; returns {stage: result line}."""
    from zoo import config
    # The extra gin files and bindings are checked up front, before any stage runs.
    config.parse(options.get("gin_files", ()), options.get("bindings", ()), finalize=False)
    pipeline = make_demo(model_dir, data, **options)
    pipeline.print_fn = print_fn
    pipeline.select(stages)  # an unknown stage fails before any work
    results = pipeline.run(stages)
    summary = os.path.join(pipeline.model_dir, "eval", "summary.txt")
    if "eval" in results and os.path.isfile(summary):
        with open(summary, encoding="utf-8") as f:
            pipeline.print("\n" + f.read().rstrip())
    gallery = os.path.join(pipeline.model_dir, "eval", "index.html")
    pipeline.print(f"zoo-demo: done in {fmt_time(pipeline.elapsed)}; results in "
                   f"{pipeline.model_dir} (open {gallery}; TensorBoard logs under */train)")
    return results
