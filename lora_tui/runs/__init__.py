"""The run contract: run folders, launching a backend, reading what a run wrote.

Pure Python (no torch): the CLI and the TUI create and watch runs; only the launched process trains.
"""
