"""What differs between two runs: settings, data, versions, results.

Settings come from each run's frozen run.toml; data from the dataset hash and, when both runs kept
their file lists (``dataset-files.json.gz``), which images were added, removed or resized and which
captions changed; results from what a reader concludes of each run.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.runs import reader
from lora_tui.runs.control import run_spec
from lora_tui.runs.rundir import DATASET_FILES

SETTING_SECTIONS = ("project.model", "project.training", "project.launch", "overrides")
IGNORED = {"overrides.output_dir", "overrides.logging_dir"}  # always the run's own folder


@dataclass
class RunDiff:
    a: str
    b: str
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    versions: list[tuple[str, Any, Any]] = field(default_factory=list)
    backend: tuple[Any, Any] | None = None
    same_data: bool | None = None
    images_added: list[str] = field(default_factory=list)
    images_removed: list[str] = field(default_factory=list)
    images_changed: list[str] = field(default_factory=list)
    captions_changed: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    files_known: bool = False
    results: list[tuple[str, Any, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        pair = lambda rows: [{"key": k, "a": a, "b": b} for k, a, b in rows]  # noqa: E731
        return {"a": self.a, "b": self.b, "backend": list(self.backend) if self.backend else None,
                "settings": pair(self.settings), "versions": pair(self.versions), "same_data": self.same_data,
                "files_known": self.files_known, "images_added": self.images_added,
                "images_removed": self.images_removed, "images_changed": self.images_changed,
                "captions_changed": [{"image": k, "a": a, "b": b} for k, a, b in self.captions_changed],
                "results": pair(self.results)}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _section(spec: dict[str, Any], dotted: str) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in IGNORED]


def _files(run_dir: Path) -> dict[str, dict[str, tuple[int, str | None]]] | None:
    """The run's file list, or None when it kept none (or it is damaged: then nothing is claimed)."""
    try:
        data = json.loads(gzip.decompress((run_dir / DATASET_FILES).read_bytes()))
        out = {}
        for label, rows in data.items():
            out[str(label)] = {str(name): (int(size), caption if isinstance(caption, str) else None)
                               for name, size, caption in rows}
        return out
    except (OSError, ValueError, EOFError, TypeError, AttributeError):
        return None


def _first_line(text: str | None) -> str | None:
    if text is None:
        return None
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def diff_runs(dir_a: Path, dir_b: Path) -> RunDiff:
    spec_a, spec_b = run_spec(dir_a), run_spec(dir_b)
    out = RunDiff(dir_a.name, dir_b.name)
    for section in SETTING_SECTIONS:
        out.settings += _changes(_flatten(_section(spec_a, section), section),
                                 _flatten(_section(spec_b, section), section))
    out.versions = _changes(spec_a.get("versions", {}), spec_b.get("versions", {}))
    backend_a, backend_b = spec_a.get("run", {}).get("backend"), spec_b.get("run", {}).get("backend")
    out.backend = (backend_a, backend_b) if backend_a != backend_b else None
    hash_a = spec_a.get("dataset", {}).get("hash")
    hash_b = spec_b.get("dataset", {}).get("hash")
    out.same_data = None if not (hash_a and hash_b) else hash_a == hash_b
    files_a, files_b = _files(dir_a), _files(dir_b)
    if files_a is not None and files_b is not None:
        out.files_known = True
        for label in sorted(set(files_a) | set(files_b)):
            a, b = files_a.get(label, {}), files_b.get(label, {})
            out.images_added += [f"{label}/{n}" for n in sorted(set(b) - set(a))]
            out.images_removed += [f"{label}/{n}" for n in sorted(set(a) - set(b))]
            for name in sorted(set(a) & set(b)):
                if a[name][0] != b[name][0]:
                    out.images_changed.append(f"{label}/{name}")
                if a[name][1] != b[name][1]:
                    out.captions_changed.append((f"{label}/{name}", _first_line(a[name][1]), _first_line(b[name][1])))
    info_a, info_b = reader.read_run(dir_a, tail=200), reader.read_run(dir_b, tail=200)
    for key in ("state", "step", "total_steps", "loss_avg", "duration_s", "peak_vram_mb", "output"):
        va, vb = getattr(info_a, key), getattr(info_b, key)
        if isinstance(va, float):
            va = round(va, 4)
        if isinstance(vb, float):
            vb = round(vb, 4)
        out.results.append((key, va, vb))
    return out


def render(d: RunDiff, limit: int = 20) -> list[str]:
    lines = [f"a: {d.a}", f"b: {d.b}"]
    if d.backend:
        lines.append(f"backend: {d.backend[0]} → {d.backend[1]}")
    lines.append("settings: " + ("same" if not d.settings else f"{len(d.settings)} differ"))
    lines += [f"  {k}: {a!r} → {b!r}" for k, a, b in d.settings]
    if d.same_data is None:
        lines.append("data: unknown (a run without a dataset hash)")
    elif d.same_data:
        lines.append("data: same images and captions")
    else:
        lines.append("data: differs")
        if d.files_known:
            for title, names in (("added", d.images_added), ("removed", d.images_removed),
                                 ("changed size", d.images_changed)):
                if names:
                    lines.append(f"  {len(names)} images {title}: " + ", ".join(names[:limit])
                                 + (" …" if len(names) > limit else ""))
            if d.captions_changed:
                lines.append(f"  {len(d.captions_changed)} captions changed:")
                for name, a, b in d.captions_changed[:limit]:
                    lines.append(f"    {name}: {a!r} → {b!r}")
                if len(d.captions_changed) > limit:
                    lines.append(f"    … and {len(d.captions_changed) - limit} more")
        else:
            lines.append("  (one of the runs kept no file list: which files changed is unknown)")
    if d.versions:
        lines.append("versions: " + ", ".join(f"{k} {a} → {b}" for k, a, b in d.versions))
    lines.append("results:")
    lines += [f"  {k}: {a} | {b}" for k, a, b in d.results]
    return lines
