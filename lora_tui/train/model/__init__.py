"""Base models: loading offline, the LDM key mapping, tokenizers, text conditioning, tiny test models."""
