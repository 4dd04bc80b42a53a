"""Pure-Python core: project model, images, captions, sd-scripts formats, steps math, lint.

Imports neither textual/rich nor torch, so the CLI and the TUI start fast and every rule here is
testable without a terminal or a GPU.
"""
