"""The built-in LoRA trainer.

Runs only in its own process (launched by accelerate or `lora-tui train`); the TUI never imports
it, so torch and diffusers stay out of the interactive process.
"""
