"""Text encoders: Parti's transformer encoder, masked-LM and contrastive pretraining."""

# Pretraining tasks (mlm, contrastive), the contrastive scorer, pretrained encoders (issue 7).
from zoo.text_encoders import contrastive, mlm, pretrained, scorer  # noqa: F401,E402

# Parti's own dense encoder, `parti_encoder` (issue 5).
from zoo.text_encoders import transformer_encoder  # noqa: F401,E402
