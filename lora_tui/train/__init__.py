"""The built-in LoRA trainer.

Runs only in its own process (launched by accelerate or `lora-tui train`); the TUI never imports
it, so torch and diffusers stay out of the interactive process.

Offline first (core.offline): huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported,
so it is set here, before anything in this package can import it — to 1 whatever the environment
says, unless the user passed --allow-download (LORA_TUI_ALLOW_DOWNLOAD=1).
"""

from lora_tui.core import offline

offline.enforce()
