"""`python -m tools.export`: runs `zoo-export` from a source checkout."""

from zoo.tools.export import run

if __name__ == "__main__":
    run()
