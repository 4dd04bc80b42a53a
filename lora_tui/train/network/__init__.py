"""The LoRA network, its file format and metadata, and saved LoRA/state files."""
