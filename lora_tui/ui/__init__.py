"""The Textual app. Imports core only; never torch, diffusers or transformers."""
