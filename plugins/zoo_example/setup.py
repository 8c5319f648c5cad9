"""zoo-example: an example zoo plugin: a strided sparse attention kernel for Parti's decoder, a
decoder with sine-cosine positions and a model using it.

Install it and zoo finds it through the `zoo.plugins` entry point; nothing in zoo/ changes:

    pip install plugins/zoo_example
    zoo-list --source attention decoder model        # ... example_strided ... [example]
    zoo-train --gin_file=runs/parti_tiny_shapes.gin \
        --gin_file=$(python -c "import zoo_example; print(zoo_example.GIN_DIR)")/strided.gin ...
    zoo-train --gin_file=runs/parti_tiny_shapes.gin \
        --gin_file=$(python -c "import zoo_example; print(zoo_example.GIN_DIR)")/sincos.gin ...
"""

from setuptools import setup

setup(
    name="zoo-example",
    version="0.1.0",
    description="Example zoo plugin: a strided sparse attention kernel (Child et al. 2019) and "
                "a Parti variant with sine-cosine positions.",
    python_requires=">=3.11",
    packages=["zoo_example"],
    package_data={"zoo_example": ["gin/*.gin"]},
    install_requires=[],  # zoo itself is the host; the plugin adds no dependencies
    entry_points={"zoo.plugins": ["example = zoo_example.components"]},
    license="Apache-2.0",
)
