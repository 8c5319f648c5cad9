"""Text encoders: Parti's transformer encoder, masked-LM and contrastive pretraining."""
