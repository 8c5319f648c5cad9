"""`python -m tools.eval`: runs `zoo-eval` from a source checkout."""

from zoo.tools.eval import run

if __name__ == "__main__":
    run()
