"""The built-in LoRA trainer.

Runs only in its own process (launched by accelerate or `lora-tui train`); the TUI never imports
it, so torch and diffusers stay out of the interactive process.

Offline first: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported, so it is set
here, before anything in this package can import it. A user who wants the hub sets it to 0.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
