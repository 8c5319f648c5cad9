"""zoo-list: every registered component, plugins included, one `kind name  summary` per line.

    zoo-list                     # everything
    zoo-list attention           # one kind
    zoo-list model --pattern='parti_*' --params   # with parameter counts (no weights allocated)
"""

import sys

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("pattern", "*", "Shell-style pattern on names, e.g. 'vit_vqgan_*'.")
    flags.DEFINE_bool("params", False, "Also print parameter counts of model sizes (image "
                      "tokenizers, models, upsamplers, text encoders) without allocating "
                      "weights: the total, and each side of an image tokenizer (the papers "
                      "count one).")
    flags.DEFINE_bool("source", False, "Also print who registered each component (zoo or a "
                      "plugin).")
    common.define_gin_flags()


PARAM_KINDS = ("image_tokenizer", "model", "upsampler", "text_encoder")


def main(argv):
    common.setup.allow_args = True
    common.setup(None)
    from zoo.registry import registry, REGISTRIES
    kinds = argv[1:] or sorted(REGISTRIES)
    rows = []
    for kind in kinds:
        reg = registry(kind)
        for entry in reg.entries():
            if not _match(entry.name, FLAGS.pattern):
                continue
            extra = ""
            if FLAGS.params and kind in PARAM_KINDS:
                from zoo.errors import ZooError
                from zoo.models.params import param_counts
                try:
                    extra = "  " + _params_text(param_counts(kind, entry.name))
                except ZooError:  # e.g. a component that needs a path to be built
                    extra = "  ? params (needs arguments to be built)"
            src = f"  [{entry.source}]" if FLAGS.source or entry.source != "zoo" else ""
            rows.append((kind, entry.name, extra, src, entry.summary))
    width = max((len(k) + len(n) for k, n, *_ in rows), default=0) + 3
    for kind, name, extra, src, summary in rows:
        line = f"{kind} {name}".ljust(width) + f"{summary}{extra}{src}"
        print(line.rstrip())
    sys.stdout.flush()


def _match(name, pattern):
    import fnmatch
    return fnmatch.fnmatchcase(name, pattern)


def _params_text(counts):
    """'64.30M (64,302,497) params: encoder 31.16M + quantizer 1.34M + decoder 31.80M'."""
    text = f"{_human(counts['total'])} params"
    if counts["groups"]:
        # The papers' size tables count one side (ViT-VQGAN: the encoder or the decoder).
        text += ": " + " + ".join(f"{group} {_short(n)}" for group, n in counts["groups"].items())
    elif counts["without_embeddings"] != counts["total"]:
        # Parti's Table 1 counts the transformer layers only.
        text += f" ({_short(counts['without_embeddings'])} without embeddings)"
    return text


def _short(n):
    return _human(n).split(" ")[0]


def _human(n):
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit} ({n:,})"
    return f"{n:,}"


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
