"""Offline is lora-tui's rule, not the environment's: nothing is fetched unless the user asks.

A model path, a tokenizer or the hub cache are looked up on disk only. ``HF_HUB_OFFLINE=0`` left in
a shell profile must not turn a missing ``tokenizer/`` folder into a DNS query (huggingface_hub
builds request headers, and fetches an "agent registry", even for ``local_files_only`` calls when it
believes it is online). Only an explicit ``--allow-download`` (``lora-tui train``/``doctor``, or the
trainer's ``--allow_download``) lifts the rule; it travels to the trainer process as
``LORA_TUI_ALLOW_DOWNLOAD=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

ALLOW_DOWNLOAD_ENV = "LORA_TUI_ALLOW_DOWNLOAD"
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def downloads_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether the user passed --allow-download for this process (and the processes it starts)."""
    return (os.environ if env is None else env).get(ALLOW_DOWNLOAD_ENV, "") == "1"


def is_offline(env: Mapping[str, str]) -> bool:
    """HF_HUB_OFFLINE as the user set it: what sd-scripts (which has no rule of ours) will obey."""
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def enforce(env: MutableMapping[str, str] | None = None, *, allow: bool | None = None) -> bool:
    """Make this process offline (or, with ``allow``, online) for huggingface_hub and transformers.

    Sets the environment variables they read at import, and when huggingface_hub is already
    imported, the constant it reads at every call. Returns whether downloads are allowed.
    """
    env = os.environ if env is None else env
    allow = downloads_allowed(env) if allow is None else allow
    if allow:
        env[ALLOW_DOWNLOAD_ENV] = "1"
    else:
        env.pop(ALLOW_DOWNLOAD_ENV, None)
    for name in HUB_OFFLINE_VARS:
        env[name] = "0" if allow else "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and env is os.environ:
        constants.HF_HUB_OFFLINE = not allow  # type: ignore[attr-defined]
    return allow
