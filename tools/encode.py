"""`python -m tools.encode`: runs `zoo-encode` from a source checkout."""

from zoo.tools.encode import run

if __name__ == "__main__":
    run()
