"""zoo: a plugin-based Parti (text-to-image) model zoo in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

# Direct dependencies, pinned to versions checked to install together on Python 3.11.
# requirements.txt pins the whole resolved set for CI and fresh machines.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "sentencepiece==0.2.3",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "pillow==13.0.0",
    "tqdm==4.70.1",
]

TOOLS = ["list", "train", "sample", "eval", "export", "train_spm", "layouts", "encode",
         "demo"]

setup(
    name="zoo",
    version="0.1.0",
    description="A plugin-based Parti text-to-image model zoo (TensorFlow 2, Keras 3, gin).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["zoo", "zoo.*"]),
    # C++ sources of the native ops, compiled on first use (zoo.attention.native); the
    # PartiPrompts TSV with its licence (zoo.eval.prompts).
    package_data={"zoo.attention.native": ["*.cc"], "zoo.eval": ["data/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest==9.0.3", "hypothesis==6.170.17", "scipy==1.17.1"],
    },
    entry_points={
        "console_scripts": [
            f"zoo-{t.replace('_', '-')}=zoo.tools.{t}:run" for t in TOOLS
        ],
    },
    license="Apache-2.0",
)
