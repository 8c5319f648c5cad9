"""The command-line tools (absl); `tools/` at the top level holds `python -m tools.X` wrappers."""
