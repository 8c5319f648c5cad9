"""`python -m tools.list`: runs `zoo-list` from a source checkout."""

from zoo.tools.list import run

if __name__ == "__main__":
    run()
