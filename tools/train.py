"""`python -m tools.train`: runs `zoo-train` from a source checkout."""

from zoo.tools.train import run

if __name__ == "__main__":
    run()
