"""lora-tui: prepare datasets and train Stable Diffusion LoRAs from one SSH terminal."""

__version__ = "0.1.0"
