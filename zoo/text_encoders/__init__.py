"""Text-encoder pretraining (masked LM and contrastive, as zoo-train tasks), pretrained
encoders loaded from those runs, and the contrastive scorer.

Parti's own dense encoder, `parti_encoder`, is part of the model: `zoo.models.text_encoder`.
"""

from zoo.text_encoders import contrastive, mlm, pretrained, scorer  # noqa: F401
