"""Renamed options: what run.json files and saved Keras configs written before a rename call by
their former names, and the one function that gives them the current ones.

One word per concept: option dicts of a task or component are `*_options` (the mlm and
contrastive tasks, the `pretrained` text encoder and Parti's `text_encoder_config` said
`*_config`), and layer widths are `width` (the ViT-VQGAN tokenizer and its ViT layers said
`dim`). `zoo.train.run_info.read` upgrades every run.json it reads, so a run directory written
before a rename still loads, resumes and initialises other runs; the renamed layers and models
upgrade their Keras configs in `from_config`.
"""

from typing import Any, Dict, Mapping

# Keys renamed in every option dict, at any depth.
RENAMED_OPTIONS: Dict[str, str] = {
    "encoder_config": "encoder_options",
    "tokenizer_config": "tokenizer_options",
    "dataset_config": "dataset_options",
    "text_encoder_config": "text_encoder_options",
}

# Keys renamed in the configs of the ViT-VQGAN tokenizers and their layers only (another
# component may well take a `dim`).
RENAMED_VIT_VQGAN: Dict[str, str] = {"dim": "width", "decoder_dim": "decoder_width"}


def new_name_of(name: str):
    """The current name of an option renamed since (any component), else None."""
    return RENAMED_OPTIONS.get(name) or RENAMED_VIT_VQGAN.get(name)


def renamed(config: Mapping[str, Any], names: Mapping[str, str]) -> Dict[str, Any]:
    """A copy of `config` with the keys in `names` under their new names.

    A config holding both an old and its new name is ambiguous: ValueError.
    """
    out = dict(config)
    for old, new in names.items():
        if old in out:
            if new in out:
                raise ValueError(f"config has both {old!r} (its old name) and {new!r}")
            out[new] = out.pop(old)
    return out


def _is_vit_vqgan(name) -> bool:
    return isinstance(name, str) and name.startswith("vit_vqgan")


def upgrade(value: Any) -> Any:
    """`value` (a run.json's content, or any part of it) with current option names.

    Renames RENAMED_OPTIONS keys in every nested dict, and RENAMED_VIT_VQGAN keys in the
    `<x>_options` dict next to an `<x>` naming a ViT-VQGAN size (e.g. `tokenizer:
    'vit_vqgan_tiny'` and `tokenizer_options`). Returns new containers; `value` is unchanged.
    """
    if isinstance(value, list):
        return [upgrade(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: upgrade(v) for k, v in renamed(value, RENAMED_OPTIONS).items()}
    for key, name in list(out.items()):
        options = out.get(f"{key}_options")
        if _is_vit_vqgan(name) and isinstance(options, dict):
            out[f"{key}_options"] = renamed(options, RENAMED_VIT_VQGAN)
    return out
