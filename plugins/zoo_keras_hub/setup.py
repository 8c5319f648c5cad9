"""zoo-keras-hub: a zoo plugin registering text encoders from local keras-hub BERT presets.

Install (offline-safe, no PyTorch):
    pip install --no-deps -r plugins/zoo_keras_hub/requirements.txt
    pip install --no-deps -e plugins/zoo_keras_hub
"""

from setuptools import find_packages, setup

setup(
    name="zoo-keras-hub",
    version="0.1.0",
    description="zoo plugin: text tokenizers/encoders from local keras-hub BERT presets "
                "(e.g. all-MiniLM-L6-v2).",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["zoo_keras_hub", "zoo_keras_hub.*"]),
    # Runtime packages are pinned in requirements.txt and installed with --no-deps (see above);
    # listing them here would let pip pull their declared dependencies (PyTorch among them).
    install_requires=[],
    entry_points={"zoo.plugins": ["keras_hub = zoo_keras_hub.components"]},
    license="Apache-2.0",
)
