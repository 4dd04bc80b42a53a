"""After training: resize, merge, bake, convert LoRA files and render checkpoint grids (torch).

Runs in the CLI's own process (`lora-tui lora …`, `lora-tui grid`), never in the TUI's.
"""
