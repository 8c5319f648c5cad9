"""Parti encoder-decoder and the super-resolution module."""

# ViT-VQGAN training pieces and the super-resolution module (issue 4).
from zoo.models import discriminator, feature_networks, losses, superres  # noqa: F401,E402

# Parti encoder-decoder, its sizes, sampling and parameter counting (issue 5).
from zoo.models import parti  # noqa: F401,E402
