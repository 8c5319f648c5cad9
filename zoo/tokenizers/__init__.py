"""Text (SentencePiece) and image (ViT-VQGAN) tokenizers."""
