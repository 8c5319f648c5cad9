"""Keras 3 building blocks shared by the models."""
