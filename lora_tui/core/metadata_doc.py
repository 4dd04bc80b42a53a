"""A fine-tuning metadata file as text to rewrite: entries in order, serialized back minimally.

Edits of a metadata file (``fix-keys``, caption edits) are whole-file journal changes: the file's
text before and after goes through :class:`~lora_tui.core.journal.Journal` like a caption file, so
the write is atomic (temp, fsync, rename), compare-and-swap, locked and undoable. This module only
turns text into entries and back: a ``.json`` object is re-dumped in its key order with the indent
it had (sd-scripts' finetune scripts write ``indent=2``); a ``.jsonl`` file keeps every line it did
not change byte for byte.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.swap import read_current


@dataclass
class MetaDoc:
    """One metadata file's entries (key → object, in file order) and how to write them back."""

    path: Path
    text: str  # exactly as read (the journal's "before")
    entries: dict[str, dict[str, Any]]
    jsonl_lines: list[str] = field(default_factory=list)  # .jsonl: the raw lines, kept where unchanged
    indent: int | None = 2
    changed: set[str] = field(default_factory=set)  # .jsonl: keys whose lines must be re-dumped
    renamed: dict[str, str] = field(default_factory=dict)  # .jsonl: new key → old key

    @property
    def is_jsonl(self) -> bool:
        return self.path.suffix == ".jsonl"

    @classmethod
    def read(cls, path: Path) -> MetaDoc:
        """Read and parse; a one-line :class:`LoraTuiError` naming the file when it is not usable."""
        try:
            data = read_current(str(path))
        except OSError as exc:
            raise LoraTuiError(f"cannot read metadata file: {exc.strerror or exc}", path=path) from None
        if data is None:
            raise LoraTuiError("metadata file not found", path=path, hint="fix metadata_file in lora-tui.toml")
        try:
            text = data.decode("utf-8")
            body = text.removeprefix("\ufeff")
            if path.suffix == ".jsonl":
                lines = text.splitlines(keepends=True)
                entries: dict[str, dict[str, Any]] = {}
                for line in lines:
                    if line.strip():
                        row = json.loads(line.removeprefix("\ufeff"))
                        entries[str(row["image_path"])] = row
                return cls(path, text, entries, jsonl_lines=lines)
            parsed = json.loads(body)
            if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
                raise ValueError("expected an object of image key → {caption, tags, image_size}")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise LoraTuiError(f"metadata file is not valid: {exc}", path=path,
                               hint="fix the JSON (sd-scripts would fail on it too)") from None
        match = re.search(r"\{\s*\n([ \t]+)\"", body)
        indent = len(match.group(1).expandtabs(4)) if match else None
        return cls(path, text, parsed, indent=indent)

    def set_fields(self, key: str, values: dict[str, Any]) -> None:
        """Set (or, with None, remove) fields of one entry."""
        row = self.entries[key]
        for name, value in values.items():
            if value is None:
                row.pop(name, None)
            else:
                row[name] = value
        self.changed.add(key)

    def rename(self, old: str, new: str) -> None:
        """Give entry ``old`` the key ``new``, keeping its place in the file."""
        if new in self.entries:
            raise LoraTuiError(f"cannot rename key {old!r}: {new!r} is already an entry", path=self.path)
        self.entries = {(new if k == old else k): v for k, v in self.entries.items()}
        if self.is_jsonl:
            self.entries[new]["image_path"] = new
            self.renamed[new] = self.renamed.pop(old, old)
            self.changed.add(new)

    def dumps(self) -> str:
        """The file's new text."""
        if not self.is_jsonl:
            end = "\n" if self.text.endswith("\n") else ""
            return json.dumps(self.entries, indent=self.indent, ensure_ascii=False) + end
        old_of = {v: k for k, v in self.renamed.items()}  # old key → new key
        out = []
        for line in self.jsonl_lines:
            if not line.strip():
                out.append(line)
                continue
            key = str(json.loads(line.removeprefix("\ufeff"))["image_path"])
            key = old_of.get(key, key)
            if key not in self.changed:
                out.append(line)
                continue
            end = "\n" if line.endswith("\n") else ""
            out.append(json.dumps(self.entries[key], ensure_ascii=False) + end)
        return "".join(out)
