"""Auto-captioning from local models: sentence captioners (transformers) and WD14-style taggers (onnxruntime).

Importing this package is light: torch, transformers and onnxruntime are imported only inside
:mod:`.vlm` and :mod:`.tagger`, when a model is actually loaded. The TUI never imports them: it runs
``python -m lora_tui.caption`` in a child process and reads its ``--json`` lines.
"""
