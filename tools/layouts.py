"""`python -m tools.layouts`: runs `zoo-layouts` from a source checkout."""

from zoo.tools.layouts import run

if __name__ == "__main__":
    run()
