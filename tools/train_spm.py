"""`python -m tools.train_spm`: runs `zoo-train-spm` from a source checkout."""

from zoo.tools.train_spm import run

if __name__ == "__main__":
    run()
