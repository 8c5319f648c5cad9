"""`python -m tools.demo`: runs `zoo-demo` from a source checkout."""

from zoo.tools.demo import run

if __name__ == "__main__":
    run()
