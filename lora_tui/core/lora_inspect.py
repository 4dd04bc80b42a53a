"""What a LoRA file is and how it was made, read from its safetensors header alone.

`lora-tui lora inspect` must answer in a blink on a 200 MB file and without importing torch, so
this module parses the safetensors header (8-byte little-endian length + JSON) with the standard
library and reads only the few bytes of each scalar ``alpha`` tensor at its offset. Tensor data is
never loaded. Files from sd-scripts, kohya_ss, diffusers/peft trainers and LyCORIS are recognised;
the ``ss_*`` training facts are read when present (other trainers omit them).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.lora_arch import SDXL, Verdict, classify

MAX_HEADER = 100 << 20  # safetensors' own limit
_SCALAR = {"F32": "<f", "F16": "<e", "F64": "<d", "I64": "<q", "I32": "<i"}


class LoraFileError(LoraTuiError):
    """A file that is not a readable LoRA."""


@dataclass
class Header:
    """The parsed header: tensor entries (dtype, shape, data_offsets) and the string metadata."""

    path: Path
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int


def read_header(path: str | Path) -> Header:
    """Parse a .safetensors header without touching tensor data; a bad file is one LoraFileError."""
    path = Path(path)
    if path.is_dir():
        raise LoraFileError("inspect reads one .safetensors file, not a folder", path=path,
                            hint=f"for a peft folder, convert it first: lora-tui lora convert {path} --to kohya")
    if not path.is_file():
        raise LoraFileError("file not found", path=path, hint="check the path")
    if path.suffix.lower() in (".ckpt", ".pt", ".pth"):
        raise LoraFileError("inspect reads .safetensors headers; a pickle has none", path=path,
                            hint=f"convert it first: lora-tui lora convert {path} --to kohya")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise LoraFileError("not a .safetensors file (too short)", path=path)
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER or length > path.stat().st_size - 8:
                raise LoraFileError("not a .safetensors file (bad header length)", path=path,
                                    hint="is it a .ckpt renamed to .safetensors?")
            raw = f.read(length)
    except OSError as exc:
        raise LoraFileError(f"cannot read: {exc.strerror or exc}", path=path) from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LoraFileError("not a .safetensors file (header is not JSON)", path=path) from None
    if not isinstance(data, dict):
        raise LoraFileError("not a .safetensors file (header is not an object)", path=path)
    meta = data.pop("__metadata__", None) or {}
    tensors = {k: v for k, v in data.items() if isinstance(v, dict) and "shape" in v}
    return Header(path, tensors, {str(k): str(v) for k, v in meta.items()}, 8 + length)


def read_scalars(header: Header, keys: list[str]) -> dict[str, float]:
    """Values of one-element tensors (alphas), read at their offsets; others are skipped."""
    out: dict[str, float] = {}
    with open(header.path, "rb") as f:
        for key in keys:
            info = header.tensors.get(key)
            fmt = _SCALAR.get(str(info.get("dtype"))) if info else None
            if info is None or (info.get("dtype") != "BF16" and fmt is None):
                continue
            start, end = info["data_offsets"]
            f.seek(header.data_start + start)
            raw = f.read(end - start)
            if info["dtype"] == "BF16" and len(raw) >= 2:
                out[key] = struct.unpack("<f", b"\0\0" + raw[:2])[0]
            elif fmt and len(raw) >= struct.calcsize(fmt):
                out[key] = struct.unpack(fmt, raw[:struct.calcsize(fmt)])[0]
    return out


# --- key styles ------------------------------------------------------------------------------

_DOWN_UP = ((".lora_down.weight", ".lora_up.weight"), (".lora_A.weight", ".lora_B.weight"),
            (".lora.down.weight", ".lora.up.weight"), (".lora_linear_layer.down.weight",
                                                       ".lora_linear_layer.up.weight"))
# suffixes, never substrings: a checkpoint's `model.diffusion_model.` holds ".diff"
_LYCORIS = (".hada_w1_a", ".lokr_w1", ".lokr_w1_a", ".oft_blocks", ".b1.weight", ".diff", ".diff_b")


def key_style(keys: list[str]) -> str:
    """kohya (lora_unet_/lora_te_ + lora_down/up), diffusers (unet./text_encoder. prefixes),
    peft (base_model.model. prefix, lora_A/B), lycoris (LoHa/LoKr tensors), or unknown."""
    if any(k.endswith(_LYCORIS) for k in keys):
        return "lycoris"
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(k.startswith("base_model.model.") for k in keys):
        return "peft"
    if any(k.startswith(("unet.", "text_encoder.", "text_encoder_2.")) for k in keys):
        return "diffusers"
    if any(k.endswith((".lora_A.weight", ".lora_down.weight")) for k in keys):
        return "peft"
    return "unknown"


@dataclass
class Module:
    """One adapted layer: where it sits, its rank, alpha (None = rank) and kind."""

    name: str
    part: str  # unet | te | te1 | te2
    block: str
    rank: int
    alpha: float | None
    conv: bool
    kernel: tuple[int, ...]
    in_features: int
    out_features: int


def _split(key: str) -> tuple[str, str] | None:
    for down, _up in _DOWN_UP:
        if key.endswith(down):
            return key[: -len(down)], down
    return None


def _part_of(name: str) -> str:
    for prefix, part in (("lora_te1_", "te1"), ("lora_te2_", "te2"), ("lora_te_", "te"), ("lora_unet_", "unet"),
                         ("text_encoder_2.", "te2"), ("text_encoder.", "te"), ("unet.", "unet")):
        if name.startswith(prefix):
            return part
    return "unet"


def _block_of(name: str, part: str) -> str:
    """A readable block label: 'TE', 'down 1', 'mid', 'up 2', 'in 4', 'out 7', …"""
    if part != "unet":
        return part.upper()
    flat = name.replace(".", "_")
    for token, label in (("down_blocks_", "down "), ("up_blocks_", "up "), ("input_blocks_", "in "),
                         ("output_blocks_", "out ")):
        at = flat.find(token)
        if at >= 0:
            digits = flat[at + len(token):].split("_", 1)[0]
            return label + digits
    if "mid_block" in flat or "middle_block" in flat:
        return "mid"
    return "other"


def modules_of(header: Header) -> list[Module]:
    keys = list(header.tensors)
    alphas = read_scalars(header, [k for k in keys if k.endswith(".alpha")])
    modules = []
    for key in keys:
        split = _split(key)
        if split is None:
            continue
        name, _ = split
        shape = header.tensors[key]["shape"]
        part = _part_of(name)
        up_shape = next((header.tensors[name + up]["shape"] for down, up in _DOWN_UP
                         if key.endswith(down) and name + up in header.tensors), [0])
        modules.append(Module(name=name, part=part, block=_block_of(name, part), rank=int(shape[0]),
                              alpha=alphas.get(name + ".alpha"), conv=len(shape) == 4,
                              kernel=tuple(shape[2:]), in_features=int(shape[1]) if len(shape) > 1 else 0,
                              out_features=int(up_shape[0])))
    return modules


def architecture(header: Header) -> Verdict:
    """SD1 / SD2 / SDXL from the metadata, else from the tensors' names and shapes (core/lora_arch.py)."""
    return classify({k: v.get("shape") or () for k, v in header.tensors.items()}, header.metadata)


def _json_field(meta: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key]) if key in meta else None
    except json.JSONDecodeError:
        return None


def _fmt(value: float | None) -> str:
    if value is None:
        return "=rank"
    return f"{value:g}"


@dataclass
class Report:
    """Everything `lora inspect` prints, also as JSON."""

    path: str
    size_bytes: int
    style: str
    architecture: str
    tensors: int
    modules: dict[str, int]
    ranks: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    metadata_keys: int = 0
    architecture_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rank_summary(modules: list[Module]) -> dict[str, Any]:
    pairs = Counter((m.rank, m.alpha) for m in modules)
    by_block: dict[str, set[tuple[int, float | None]]] = {}
    for m in modules:
        by_block.setdefault(m.block, set()).add((m.rank, m.alpha))
    summary: dict[str, Any] = {}
    if pairs:
        (rank, alpha), _ = pairs.most_common(1)[0]
        summary = {"rank": rank, "alpha": alpha, "uniform": len(pairs) == 1}
        conv = [m for m in modules if m.conv and m.kernel != (1, 1)]
        if conv:
            crank, calpha = Counter((m.rank, m.alpha) for m in conv).most_common(1)[0][0]
            summary["conv_rank"], summary["conv_alpha"] = crank, calpha
        if len(pairs) > 1:
            summary["per_block"] = {
                block: sorted(({"rank": r, "alpha": a} for r, a in values), key=lambda d: d["rank"])
                for block, values in by_block.items()}
    return summary


def _training(meta: Mapping[str, str], top_tags: int) -> dict[str, Any]:
    def get(key: str) -> str | None:
        value = meta.get(key)
        return None if value in (None, "None", "") else value

    facts: dict[str, Any] = {}
    for label, key in (("base_model", "ss_sd_model_name"), ("base_model_version", "ss_base_model_version"),
                       ("steps", "ss_steps"), ("epoch", "ss_epoch"), ("epochs", "ss_num_epochs"),
                       ("max_train_steps", "ss_max_train_steps"), ("learning_rate", "ss_learning_rate"),
                       ("unet_lr", "ss_unet_lr"), ("text_encoder_lr", "ss_text_encoder_lr"),
                       ("optimizer", "ss_optimizer"), ("network_module", "ss_network_module"),
                       ("network_dim", "ss_network_dim"), ("network_alpha", "ss_network_alpha"),
                       ("resolution", "modelspec.resolution"), ("train_images", "ss_num_train_images"),
                       ("reg_images", "ss_num_reg_images"), ("batch_size", "ss_total_batch_size"),
                       ("seed", "ss_seed"), ("mixed_precision", "ss_mixed_precision"),
                       ("clip_skip", "ss_clip_skip"), ("output_name", "ss_output_name"),
                       ("comment", "ss_training_comment"), ("trainer", "modelspec.implementation_version"),
                       ("title", "modelspec.title"), ("date", "modelspec.date")):
        value = get(key)
        if value is not None:
            facts[label] = value
    if "resolution" not in facts:
        datasets = _json_field(meta, "ss_datasets")
        if isinstance(datasets, list) and datasets and isinstance(datasets[0], dict):
            res = datasets[0].get("resolution")
            if isinstance(res, list) and len(res) == 2:
                facts["resolution"] = f"{res[0]}x{res[1]}"
    dirs = _json_field(meta, "ss_dataset_dirs")
    if isinstance(dirs, dict):
        facts["dataset_dirs"] = {str(k): {"images": (v or {}).get("img_count"), "repeats": (v or {}).get("n_repeats")}
                                 for k, v in dirs.items() if isinstance(v, dict)}
    freq = _json_field(meta, "ss_tag_frequency")
    if isinstance(freq, dict):
        total: Counter[str] = Counter()
        for tags in freq.values():
            if isinstance(tags, dict):
                total.update({str(t): int(c) for t, c in tags.items() if isinstance(c, (int, float))})
        if total:
            facts["top_tags"] = [[t, c] for t, c in total.most_common(top_tags)]
    return facts


def inspect(path: str | Path, *, top_tags: int = 10) -> Report:
    """Inspect one LoRA file (.safetensors; headers and a few scalars only)."""
    header = read_header(path)
    if not header.tensors:
        raise LoraFileError("the file holds no tensors", path=path)
    modules = modules_of(header)
    style = key_style(list(header.tensors))
    if not modules and style != "lycoris":
        raise LoraFileError("no LoRA tensors (lora_down/lora_up, lora_A/lora_B) in this file", path=path,
                            hint="is it a base model checkpoint rather than a LoRA?")
    counts = {"unet": sum(m.part == "unet" for m in modules),
              "text_encoder": sum(m.part != "unet" for m in modules),
              "conv": sum(m.conv for m in modules),
              "conv3x3": sum(m.conv and m.kernel != (1, 1) for m in modules), "total": len(modules)}
    verdict = architecture(header)
    arch = verdict.family
    if arch == SDXL:  # CLIP-L (lora_te1_ / text_encoder.) and OpenCLIP bigG (lora_te2_ / text_encoder_2.)
        counts["text_encoder_1"] = sum(m.part in ("te1", "te") for m in modules)
        counts["text_encoder_2"] = sum(m.part == "te2" for m in modules)
    meta = header.metadata
    hashes = {k: meta[k] for k in ("sshs_model_hash", "sshs_legacy_hash", "ss_sd_model_hash", "ss_new_sd_model_hash",
                                   "ss_session_id") if meta.get(k) not in (None, "None", "")}
    return Report(path=str(path), size_bytes=Path(path).stat().st_size, style=style,
                  architecture=arch, tensors=len(header.tensors), modules=counts,
                  ranks=_rank_summary(modules), training=_training(meta, top_tags), hashes=hashes,
                  metadata_keys=len(meta), architecture_reason=verdict.reason())


def render(report: Report) -> list[str]:
    """The human-readable lines."""
    mb = report.size_bytes / 1e6
    lines = [f"{report.path}  ({mb:.1f} MB, {report.tensors} tensors)",
             f"  style         {report.style}",
             f"  architecture  {report.architecture}   ({report.architecture_reason})"]
    r = report.ranks
    if r:
        line = f"  rank / alpha  {r['rank']} / {_fmt(r['alpha'])}"
        if "conv_rank" in r:
            line += f"   conv 3x3: {r['conv_rank']} / {_fmt(r['conv_alpha'])}"
        if not r["uniform"]:
            line += "   (differs per block)"
        lines.append(line)
        for block, pairs in (r.get("per_block") or {}).items():
            lines.append(f"    {block:<10} " + ", ".join(f"{p['rank']}/{_fmt(p['alpha'])}" for p in pairs))
    c = report.modules
    te = f"text encoder {c['text_encoder']}"
    if "text_encoder_2" in c:
        te = f"text encoders {c['text_encoder']} (TE1 {c['text_encoder_1']}, TE2 {c['text_encoder_2']})"
    lines.append(f"  modules       {c['total']}: UNet {c['unet']}, {te}; conv {c['conv']} (3x3: {c['conv3x3']})")
    t = dict(report.training)
    dirs = t.pop("dataset_dirs", None)
    tags = t.pop("top_tags", None)
    if t:
        lines.append("  training")
        for key, value in t.items():
            lines.append(f"    {key:<18} {value}")
    if dirs:
        lines.append("  dataset folders")
        for name, info in dirs.items():
            lines.append(f"    {name:<30} {info['images']} images × {info['repeats']} repeats")
    if tags:
        lines.append("  top tags      " + ", ".join(f"{t_} ({n})" for t_, n in tags))
    if not report.training:
        lines.append("  training      no ss_* metadata (not written by sd-scripts or lora-tui)")
    for key, value in report.hashes.items():
        lines.append(f"  {key:<22}{value}")
    return lines
