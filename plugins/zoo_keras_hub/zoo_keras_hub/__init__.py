"""zoo plugin: text tokenizers and encoders from keras-hub BERT presets in local folders."""
