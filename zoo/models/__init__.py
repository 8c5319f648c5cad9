"""Parti encoder-decoder and the super-resolution module."""
