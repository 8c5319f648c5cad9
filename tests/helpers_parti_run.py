"""A tiny `parti` zoo-train run (micro sizes, 2 steps) shared by the eval and export tests."""

import atexit
import shutil
import tempfile
from pathlib import Path

_CACHE = {}


def tiny_parti_run(root=None) -> Path:
    """A 2-step micro Parti run on synthetic_shapes (made once per process, or into `root`).

    Under it: spm.model (the text tokenizer) and parti/ (the run). The data is
    synthetic_shapes with max_objects=1, bound in gin, so that zoo-eval must read the run's
    operative config to draw held-out prompts of the same kind.
    """
    if root is None and "run" in _CACHE:
        return _CACHE["run"]
    import gin

    import zoo.plugins
    from zoo.data import shapes
    from zoo.tokenizers.spm_training import train_sentencepiece
    from zoo.train.loop import train
    from zoo.train.parti_task import PartiTask  # (also registers the `parti` task)

    zoo.plugins.load_builtins()
    keep = root is not None
    root = Path(root) if keep else Path(tempfile.mkdtemp(prefix="zoo_tiny_parti_"))
    if not keep:
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    spm = train_sentencepiece([shapes.caption(0, i) for i in range(400)],
                              str(root / "spm.model"), vocab_size=64, shrink_to_fit=True)
    gin.clear_config()
    gin.parse_config("synthetic_shapes.max_objects = 1\nsynthetic_shapes.seed = 3")
    try:
        task = PartiTask(model="parti_micro", image_tokenizer="vit_vqgan_micro",
                         text_tokenizer=spm, model_options={"decoder_attention": "dense",
                                                            "dropout": 0.0})
        train(task=task, model_dir=str(root / "parti"), steps=2, batch_size=4,
              checkpoint_every=2, summary_every=2, image_summary_every=0, progress=False)
    finally:
        gin.clear_config()
    if not keep:
        _CACHE["run"] = root
    return root
