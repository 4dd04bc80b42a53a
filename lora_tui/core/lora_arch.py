"""Which base model family (SD1, SD2, SDXL) a LoRA file is for, from its tensor names AND shapes.

Metadata (`ss_base_model_version`, `modelspec.architecture`) answers when present, but many files
carry none. Names alone cannot always tell: a U-Net-only LoRA in diffusers' layout
(`unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight`) has the same
module names on SD1, SD2 and SDXL. The shapes differ, and so does which modules exist at all:

- the cross-attention context width (input of `attn2.to_k`/`to_v`): SD1 768 (CLIP-L), SD2 1024
  (OpenCLIP-H), SDXL 2048 (CLIP-L + OpenCLIP-bigG, concatenated);
- SD1's transformers project in and out with 1x1 convolutions, SD2's and SDXL's with Linear layers;
- SDXL has three U-Net levels (no `down_blocks.3`/`up_blocks.3`), no attention in `down_blocks.0`
  or `up_blocks.2`, attention in `up_blocks.0`, and transformer depth 2/10 (`transformer_blocks.1…`);
  SD1/SD2 have four levels and depth 1 everywhere;
- at the real widths (block_out_channels 320/640/1280[/1280]) `up_blocks.1`'s transformers are
  1280 wide on SD1/SD2 and 640 on SDXL;
- the text encoders: sd-scripts names SDXL's two `lora_te1_`/`lora_te2_` (diffusers
  `text_encoder`/`text_encoder_2`) and SD's one `lora_te_`; SD2's is 1024 wide.

Metadata can be wrong (a merge or a hand edit keeps another file's `ss_base_model_version`): where
the tensors alone name a family the metadata excludes, the tensors win and the reason says so.
Metadata or names of another model family (Flux, SD3, Lumina…: sd-scripts writes `ss_v2: False` for
those too, and names Flux's CLIP-L `lora_te1_` as SDXL's) make the verdict "other", never SD1/SDXL.

These facts are those of the configs shipped in `lora_tui/train/model/model_configs` (sd_v1, sd_v2,
sdxl). Each piece of evidence narrows the set of candidate families; the answer is what is left.
When nothing narrows it to one family (e.g. self-attention only, on widths no real base has), the
verdict says so instead of guessing. Header-level and torch-free: `lora inspect` uses it on shapes
read from the safetensors header, the torch tools on a loaded state dict's shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SD1, SD2, SDXL = "SD1", "SD2", "SDXL"
ALL = frozenset({SD1, SD2, SDXL})
SD = frozenset({SD1, SD2})
AMBIGUOUS_SD = "SD1/SD2"  # an SD1.x/SD2.x LoRA whose files cannot say which of the two
OTHER = "other"  # a LoRA for another model family (Flux, SD3, …), said by its metadata or names
UNKNOWN = "unknown"
FAMILY_KEY = "lora_tui.family"  # "sdxl" | "sd": what `lora convert` marks a file it wrote, when it knew

# The down (A) factor of each LoRA style; its input width is the adapted layer's input width.
DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight")
_OTHER_SUFFIXES = (".lora_up.weight", ".lora_B.weight", ".lora.up.weight", ".lora_linear_layer.up.weight",
                   ".alpha", ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".lokr_w1", ".lokr_w2",
                   ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2_a", ".lokr_w2_b", ".oft_blocks", ".diff", ".diff_b",
                   ".b1.weight", ".b2.weight", ".dora_scale")
_PREFIXES = (("lora_te1_", "te1"), ("lora_te2_", "te2"), ("lora_te_", "te_kohya"), ("lora_unet_", "unet"),
             ("text_encoder_2.", "te2"), ("text_encoder.", "te"), ("unet.", "unet"))
_CROSS_WIDTH = {768: frozenset({SD1}), 1024: frozenset({SD2}), 2048: frozenset({SDXL})}
_TE_WIDTH_INPUTS = ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "mlp_fc1")
# layers of a transformer block whose input is the block's channel width
_WIDTH_INPUTS = ("proj_in", "attn1_to_q", "attn1_to_k", "attn1_to_v", "attn2_to_q", "ff_net_0_proj")


@dataclass(frozen=True)
class Verdict:
    """The families still possible, the family named (SD1, SD2, SDXL, SD1/SD2 or unknown) and why."""

    candidates: frozenset[str]
    evidence: tuple[str, ...] = field(default=())
    conflict: bool = False
    foreign: str = ""  # what says the LoRA is for another model family, when something does

    @property
    def family(self) -> str:
        if self.foreign:
            return OTHER
        if len(self.candidates) == 1:
            return next(iter(self.candidates))
        return AMBIGUOUS_SD if self.candidates == SD else UNKNOWN

    @property
    def is_sdxl(self) -> bool | None:
        """True/False when the file says SDXL or not; None when it cannot be told."""
        if self.candidates == {SDXL}:
            return True
        if self.candidates and SDXL not in self.candidates:
            return False
        return None

    def reason(self) -> str:
        """One line: the evidence used, or why the family cannot be told."""
        if self.foreign:
            return f"{self.foreign}: not an SD1, SD2 or SDXL LoRA"
        if self.conflict:
            return "conflicting evidence: " + "; ".join(self.evidence)
        if self.family == UNKNOWN:
            said = f" ({'; '.join(self.evidence)})" if self.evidence else ""
            return ("cannot tell: SD1/SD2 and SDXL LoRAs with these modules have the same names, and their "
                    f"widths are no real base model's{said}")
        said = "; ".join(self.evidence)
        if self.family == AMBIGUOUS_SD:
            return f"{said}; nothing here tells SD1 from SD2"
        return said


def _module(key: str) -> tuple[str, str, bool] | None:
    """(part, module path with '_' for '.', whether the key is a down factor) of a LoRA tensor key."""
    down = next((s for s in DOWN_SUFFIXES if key.endswith(s)), None)
    suffix = down or next((s for s in _OTHER_SUFFIXES if key.endswith(s)), None)
    if suffix is None:
        return None
    name = key[: -len(suffix)].removeprefix("base_model.model.")
    for prefix, part in _PREFIXES:
        if name.startswith(prefix):
            return part, name[len(prefix):].replace(".", "_"), down is not None
    part = "te" if name.startswith("text_model.") else "unet"  # a bare peft adapter of one model
    return part, name.replace(".", "_"), down is not None


_STRUCTURE: tuple[tuple[re.Pattern[str], frozenset[str], str], ...] = tuple(
    (re.compile(pattern), families, why) for pattern, families, why in (
        (r"^(input_blocks|middle_block|output_blocks|label_emb)_", frozenset({SDXL}),
         "U-Net names in the original SGM layout (what sd-scripts writes for SDXL)"),
        (r"transformer_blocks_([1-9]|\d\d)_", frozenset({SDXL}), "transformer depth above 1 (only SDXL's)"),
        (r"^down_blocks_0_attentions_", SD, "attention in down_blocks.0 (SDXL has none there)"),
        (r"^(down_blocks|up_blocks)_3_", SD, "a fourth U-Net level (SDXL has three)"),
        (r"^up_blocks_2_attentions_", SD, "attention in up_blocks.2 (SDXL has none there)"),
        (r"^up_blocks_0_attentions_", frozenset({SDXL}), "attention in up_blocks.0 (SD1/SD2 have none there)"),
        (r"^add_embedding_", frozenset({SDXL}), "the size/pooled-text embedding (SDXL's add_embedding)"),
    ))


# names only other families' LoRAs have: sd-scripts' Flux (double/single blocks, T5 as lora_te3_),
# SD3 (MMDiT joint blocks), and diffusers' transformer-based pipelines (`transformer.` prefix)
_FOREIGN = re.compile(r"^(lora_te3_|text_encoder_3\.|transformer\."
                      r"|(lora_unet_|unet\.)?(double|single|joint)_blocks[._])")


def _foreign_names(keys: Iterable[str]) -> str:
    key = next((k for k in keys if _FOREIGN.match(k.removeprefix("base_model.model."))), None)
    return "" if key is None else f"{re.split(r'[.](lora|alpha)', key)[0]!r} is a Flux/SD3-style module name"


def _evidence(shapes: Mapping[str, Sequence[int]]) -> list[tuple[frozenset[str], str]]:
    found: dict[str, tuple[frozenset[str], str]] = {}

    def add(families: frozenset[str], why: str) -> None:
        found.setdefault(why, (families, why))

    for key, shape in shapes.items():
        parsed = _module(key)
        if parsed is None:
            continue
        part, path, is_down = parsed
        if part in ("te1", "te2"):
            add(frozenset({SDXL}), "SDXL's text encoder names (lora_te1_/lora_te2_)" if part == "te1"
                or key.startswith("lora_") else "a second text encoder (text_encoder_2)")
        elif part == "te_kohya":
            add(SD, "one text encoder named lora_te_ (SDXL's are lora_te1_/lora_te2_)")
        if part == "unet":
            for pattern, families, why in _STRUCTURE:
                if pattern.search(path):
                    add(families, why)
        if not is_down or len(shape) < 2:
            continue
        width = int(shape[1])
        if part in ("te", "te_kohya") and path.endswith(_TE_WIDTH_INPUTS) and width == 1024:
            add(frozenset({SD2}), "a 1024-wide text encoder (SD2's OpenCLIP-H)")
        if part != "unet":
            continue
        if path.endswith(("attn2_to_k", "attn2_to_v")) and width in _CROSS_WIDTH:
            families = _CROSS_WIDTH[width]
            add(families, f"cross-attention reads a {width}-wide text context ({next(iter(families))})")
        if path.endswith(("proj_in", "proj_out")) and "attentions" in path:
            if len(shape) == 4:
                add(frozenset({SD1}), "transformer projections are 1x1 convolutions (SD1's; SD2/SDXL use Linear)")
            else:
                add(frozenset({SD2, SDXL}), "transformer projections are Linear (SD2/SDXL; SD1 uses 1x1 convolutions)")
        if path.startswith("up_blocks_1_attentions_") and path.endswith(_WIDTH_INPUTS) and width in (640, 1280):
            add(SD if width == 1280 else frozenset({SDXL}),
                f"up_blocks.1's transformers are {width} wide ({'SD1/SD2' if width == 1280 else 'SDXL'})")
    return list(found.values())


# what sd-scripts and modelspec call other model families; an unknown name is left to ss_v2 and the tensors
_OTHER_FAMILIES = ("flux", "chroma", "sd3", "stable-diffusion-3", "lumina", "hunyuan", "anima", "auraflow",
                   "pixart", "kolors", "hidream", "qwen", "stable-cascade", "wan")


def _from_metadata(metadata: Mapping[str, str]) -> tuple[frozenset[str], str] | None:
    mark = metadata.get(FAMILY_KEY)
    if mark in ("sdxl", "sd"):
        return (frozenset({SDXL}), "metadata says SDXL") if mark == "sdxl" else (SD, "metadata says SD1/SD2")
    base = str(metadata.get("ss_base_model_version", "") or "").strip().lower()
    arch = str(metadata.get("modelspec.architecture", "") or "").strip().lower()
    base = "" if base == "none" else base
    if base.startswith("sdxl") or "-xl-" in arch or arch.startswith("sdxl"):
        return frozenset({SDXL}), "metadata says SDXL"
    if base.startswith("sd_v2") or arch.startswith("stable-diffusion-v2"):
        return frozenset({SD2}), "metadata says SD2"
    if base.startswith("sd_v1") or arch.startswith("stable-diffusion-v1"):
        return frozenset({SD1}), "metadata says SD1"
    other = next((said for said in (base, arch) if said.startswith(_OTHER_FAMILIES)), None)
    if other is not None:  # sd-scripts' flux1, lumina2…; modelspec's flux-1-dev, stable-diffusion-3-…
        return frozenset(), f"metadata says {other.split('/')[0]}"
    if metadata.get("ss_v2") == "True":  # files older than ss_base_model_version
        return frozenset({SD2}), "metadata says SD2"
    if metadata.get("ss_v2") == "False":
        return frozenset({SD1}), "metadata says SD1"
    return None


def classify(shapes: Mapping[str, Sequence[int]] | Iterable[str],
             metadata: Mapping[str, str] | None = None) -> Verdict:
    """The family of a LoRA from {tensor key: shape} (or bare keys: names only) and its metadata.

    Every piece of tensor evidence narrows the candidates; evidence that contradicts itself leaves
    none (`conflict`). Metadata naming a family (sd-scripts and lora-tui write it) answers alone when
    the tensors agree, or cannot say, or contradict themselves; it narrows the tensors' answer when
    that is wider; where the tensors exclude what it names, the tensors win (loaders go by them).
    """
    if not isinstance(shapes, Mapping):
        shapes = dict.fromkeys(shapes, ())
    meta = _from_metadata(metadata or {})
    if meta is not None and not meta[0]:  # another family's metadata is a claim no SD file makes
        return Verdict(frozenset(), (meta[1],), foreign=meta[1])
    foreign = _foreign_names(shapes)
    if foreign:
        return Verdict(frozenset(), (foreign,), foreign=foreign)
    candidates, used = ALL, []
    for families, why in _evidence(shapes):
        used.append(why)
        candidates = candidates & families
    if meta is None:
        return Verdict(candidates, tuple(used), conflict=not candidates)
    said, why = meta
    if not used or not candidates or said <= candidates:
        return Verdict(said, (why,))
    if said & candidates:
        return Verdict(said & candidates, (why, *used))
    return Verdict(candidates, (f"{why}, but the tensors say otherwise", *used))


def shapes_of(state_dict: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a state dict of tensors (anything with `.shape`; others count as names only)."""
    return {key: tuple(getattr(value, "shape", ())) for key, value in state_dict.items()}
