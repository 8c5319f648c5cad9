"""`python -m tools.sample`: runs `zoo-sample` from a source checkout."""

from zoo.tools.sample import run

if __name__ == "__main__":
    run()
