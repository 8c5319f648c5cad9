"""Runnable wrappers: `python -m tools.<name>` from the repository root (code lives in zoo.tools)."""
