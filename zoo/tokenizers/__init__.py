"""Text (SentencePiece) and image (ViT-VQGAN) tokenizers."""

from zoo.tokenizers import text  # noqa: F401  (registers text tokenizer 'sentencepiece')

from zoo.tokenizers import vit_vqgan  # noqa: F401,E402
