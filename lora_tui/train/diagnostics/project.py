"""`lora-tui doctor PROJECT`: the project's base model, tokenizer, disk space and sd-scripts checkout.

Models are checked from their headers only (safetensors header, Diffusers JSON files, a `.ckpt`
opened with mmap), never loaded, so this takes well under a second even for a 7 GB checkpoint. The
disk estimate uses the real LoRA shapes of SD1.5/SD2.1/SDXL (see `core.vram.LORA_PARAMS_PER_RANK`), so a
planned run that cannot fit its checkpoints is caught before it starts rather than at the third save;
the VRAM estimate (`core.vram`) does the same for the card's memory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lora_tui.core import builtin_models
from lora_tui.core.errors import ModelError
from lora_tui.core.family_checks import family_problems
from lora_tui.core.findings import ERROR, INFO, OK, Finding
from lora_tui.core.findings import WARNING as WARN
from lora_tui.core.model_family import LABELS, SD2, SD2_V, SDXL, FamilyError, diffusers_family, safetensors_family
from lora_tui.core.offline import is_offline
from lora_tui.core.project import Project, resolve_path
from lora_tui.core.train_settings import effective
from lora_tui.core.vram import LORA_PARAMS_PER_RANK, network_arg
from lora_tui.core.vram_check import check_vram

HEADER_BYTES_PER_TENSOR = 142  # safetensors JSON header entry for one `lora_…` tensor
METADATA_BYTES = 64 * 1024  # ss_* metadata (tag frequencies included), generously
DIFFUSERS_PARTS = ("unet", "vae", "text_encoder")
SD_SCRIPTS_FILES = ("train_network.py", "library/config_util.py")


def check_project(project: Project, env: Mapping[str, str]) -> list[Finding]:
    """Model, tokenizer, sd-scripts checkout (for that backend) and disk space."""
    findings, family = check_model(project)
    if project.model_path is not None and project.model_path.exists():
        findings += check_tokenizer(project, family, env)
    if project.backend == "sd-scripts":
        findings += check_sd_scripts(project)
    report, note = _steps(project)
    findings += check_disk(project, family, report, note)
    findings += check_vram(project, family, report)
    return findings


def _steps(project: Project) -> tuple[Any, str]:
    """The steps report (buckets, batch, steps), or None and why (the dataset is `lora-tui check`'s business)."""
    from lora_tui.core import steps

    try:
        return steps.compute(project), ""
    except Exception as exc:
        return None, f" (steps unknown: {exc})".splitlines()[0]


# ------------------------------------------------------------------------------------------- model
def check_model(project: Project) -> tuple[list[Finding], str]:
    """Findings on the base model and its family ('sd_v1' / 'sd_v2'; the project's v2 flag if unknown).

    A built-in reference (``lora-tui:tiny-sd15``) says where it lives; once built, its folder is
    checked like any other."""
    if not project.model_reference:
        return _check_model_path(project)
    known = builtin_models.find(project.model_reference)
    if known is None:
        return [Finding.about("model", ERROR, f"unknown built-in model '{project.model_reference}'",
                              f"use one of {builtin_models.known_names()}, or a .safetensors/.ckpt file or a "
                              "Diffusers folder")], "sd_v2" if project.model.get("v2") else "sd_v1"
    where = known.path()
    state = "built" if known.is_built() else "not built yet: the first run builds it (seconds)"
    notes = [Finding.about("model", INFO, f"{known.reference} lives in {where} ({state}); "
                           f"{builtin_models.TEST_MODEL_NOTE}", builtin_models.TEST_MODEL_FIX)]
    if not known.is_built():
        return notes, known.family
    findings, family = _check_model_path(project)
    return notes + findings, family


def _check_model_path(project: Project) -> tuple[list[Finding], str]:
    v2 = bool(project.model.get("v2"))
    family = "sd_v2" if v2 else "sd_v1"
    if project.model_hub_id:
        return [Finding.about("model", WARN, f"'{project.model_hub_id}' is a Hugging Face hub id: training "
                              "finds it only in the local cache (or downloads it with --allow-download)",
                              "download it once and point pretrained_model_name_or_path at the local file or "
                              "folder")], family
    path = project.model_path
    if path is None:
        return [Finding.about("model", ERROR, "no base model set",
                              f"set [model] pretrained_model_name_or_path in {project.file}")], family
    if not path.exists():
        return [Finding.about("model", ERROR, f"not found: {path}",
                              "give a Diffusers folder or a .safetensors/.ckpt file; models are never "
                              "downloaded")], family
    try:
        if path.is_dir():
            kind, detected = "Diffusers folder", _diffusers_family(path)
            out: list[Finding] = []
        elif path.suffix.lower() == ".safetensors":
            kind, detected, out = "safetensors", _safetensors_family(path), []
        elif path.suffix.lower() in (".ckpt", ".pt", ".pth"):
            kind, out = "ckpt", [Finding.about("model", WARN, f"{path.name} is a pickle checkpoint; it loads with "
                                               "torch.load(weights_only=True), and one that carries code is refused",
                                               "convert it once to .safetensors (faster, safer to share)")]
            detected = _ckpt_family(path)
        else:
            return [Finding.about("model", ERROR, f"unsupported model file type {path.suffix!r}: {path}",
                                  "use a .safetensors or .ckpt checkpoint, or a Diffusers folder")], family
    except ModelError as exc:
        return [Finding.about("model", ERROR, f"{exc.path or path}: {exc.message}", exc.hint)], family
    if detected == "unknown":
        return [*out, Finding.about("model", ERROR, f"{path}: no Stable Diffusion text encoder found",
                                    "a full SD1.x/SD2.x checkpoint is needed, not a LoRA, VAE or U-Net only "
                                    "file")], family
    if detected is None:  # an old-format .ckpt that cannot be opened without reading it all
        return [*out, Finding.about("model", OK, f"{kind} {path} (family not checked: legacy pickle format)")], family
    out.append(Finding.about("model", OK, f"{kind} {path} ({LABELS[detected]})"))
    detected = SD2 if detected == SD2_V else detected  # same weights and LoRA shapes as SD2
    for problem in family_problems(detected, project.args, backend=project.backend):
        if problem.code.startswith(("family", "sdxl")):
            out.append(Finding.about("model", problem.severity, problem.message, problem.fix))
    if detected == SD2 and not v2 and project.backend != "sd-scripts":
        out.append(Finding.about("model", WARN, "SD2.x model without [model] v2 = true (the built-in trainer "
                                 "detects it)", "set v2 = true in [model]"))
    return out, detected


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("file missing from the Diffusers folder", path=path,
                         hint="copy the whole model folder (model_index.json, unet/, vae/, text_encoder/, "
                              "tokenizer/)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read JSON: {exc}".splitlines()[0], path=path) from None
    if not isinstance(data, dict):
        raise ModelError("expected a JSON object", path=path)
    return data


def _diffusers_family(root: Path) -> str:
    """A Diffusers folder's family from its JSON files; raises ModelError for a missing part."""
    index = _json_file(root / "model_index.json")
    sdxl = "text_encoder_2" in index or (root / "text_encoder_2").is_dir()
    for part in (*DIFFUSERS_PARTS, "text_encoder_2") if sdxl else DIFFUSERS_PARTS:
        _json_file(root / part / "config.json")
        if not any((root / part).glob("*.safetensors")) and not any((root / part).glob("*.bin")):
            raise ModelError("no weights (*.safetensors or *.bin)", path=root / part,
                             hint="copy the weights next to config.json")
    try:
        return diffusers_family(root)  # SDXL, SD1, SD2 or SD2-v (from the scheduler's prediction_type)
    except FamilyError as exc:
        raise ModelError(str(exc), path=root) from None


def _safetensors_family(path: Path) -> str:
    """Family from the tensor names in the header (core.model_family); the tensors are never read."""
    try:
        return safetensors_family(path)
    except FamilyError as exc:
        raise ModelError(f"cannot read the safetensors header: {exc}", path=path,
                         hint="the file is truncated or not a safetensors checkpoint") from None


def _ckpt_family(path: Path) -> str | None:
    """Family of a zip-format `.ckpt`, memory-mapped (weights_only) so nothing large is read."""
    import pickle

    import torch

    from lora_tui.train.model.ldm_convert import PICKLE_REFUSED, detect_family

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ModelError(PICKLE_REFUSED, path=path,
                         hint="convert it to .safetensors with a trusted tool") from None
    except Exception:  # legacy (non-zip) format: mmap is impossible, and a full read is not a quick check
        return None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ModelError("checkpoint is not a dict of weights", path=path)
    return detect_family(state)


# ------------------------------------------------------------------------------------------- tokenizer
def check_tokenizer(project: Project, family: str, env: Mapping[str, str]) -> list[Finding]:
    """The built-in trainer's lookup (model folder, cache dir, HF cache); sd-scripts' own for that backend."""
    from lora_tui.train.model import tokenizer  # not models: no diffusers import, the check stays quick

    v2 = family == "sd_v2"
    raw_cache = project.model.get("tokenizer_cache_dir")
    cache_dir = resolve_path(project.root, raw_cache) if raw_cache else None
    if family == SDXL:
        return _check_sdxl_tokenizers(project, cache_dir, env)
    if project.backend == "sd-scripts":
        model_id, subfolder = tokenizer.TOKENIZER_IDS[v2]
        local = cache_dir / model_id.replace("/", "_") if cache_dir else None
        if local is not None and local.is_dir():
            return [Finding.about("tokenizer", OK, f"{local} (sd-scripts' tokenizer_cache_dir)")]
        if tokenizer._hf_cached_tokenizer(model_id, subfolder) is not None:
            return [Finding.about("tokenizer", OK, f"{model_id} in the local Hugging Face cache")]
        fix = (f"run sd-scripts once online with tokenizer_cache_dir set, or copy {model_id}'s tokenizer to "
               f"{local or '<tokenizer_cache_dir>/' + model_id.replace('/', '_')}")
        if is_offline(env):
            return [Finding.about("tokenizer", ERROR, f"sd-scripts needs {model_id} and it is not cached (offline)",
                                  fix)]
        return [Finding.about("tokenizer", WARN, f"sd-scripts will download {model_id} on its first run", fix)]
    try:
        found = tokenizer.load_tokenizer(project.model_path or project.root, v2=v2, tokenizer_cache_dir=cache_dir)
    except ModelError as exc:
        return [Finding.about("tokenizer", ERROR, f"{exc.path}: {exc.message}" if exc.path else exc.message, exc.hint)]
    where = getattr(found, "name_or_path", "") or "found"
    return [Finding.about("tokenizer", OK, f"{where} ({len(found)} tokens)")]


def _check_sdxl_tokenizers(project: Project, cache_dir: Path | None, env: Mapping[str, str]) -> list[Finding]:
    """SDXL's two tokenizers: sd-scripts looks only in tokenizer_cache_dir and the HF cache (it ignores
    the model's own folders); lora-tui's loader also looks beside the model."""
    from lora_tui.train.model import tokenizer
    from lora_tui.train.model.sdxl_load import SDXL_TOKENIZERS, find_sdxl_tokenizer

    out: list[Finding] = []
    for index, (_sub, model_id) in enumerate(SDXL_TOKENIZERS):
        local = cache_dir / model_id.replace("/", "_") if cache_dir else None
        if project.backend == "sd-scripts":
            if local is not None and local.is_dir():
                out.append(Finding.about("tokenizer", OK, f"{local} (sd-scripts' tokenizer_cache_dir)"))
            elif tokenizer._hf_cached_tokenizer(model_id, None) is not None:
                out.append(Finding.about("tokenizer", OK, f"{model_id} in the local Hugging Face cache"))
            else:
                fix = (f"copy {model_id}'s tokenizer files to "
                       f"{local or '<tokenizer_cache_dir>/' + model_id.replace('/', '_')}")
                severity, verb = (ERROR, "is not cached (offline)") if is_offline(env) else (WARN, "will be downloaded")
                out.append(Finding.about("tokenizer", severity, f"sdxl_train_network.py needs {model_id}: it {verb}",
                                         fix))
            continue
        try:
            found = find_sdxl_tokenizer(project.model_path or project.root, index, cache_dir)
        except ModelError as exc:
            out.append(Finding.about("tokenizer", ERROR, exc.message, exc.hint))
        else:
            out.append(Finding.about("tokenizer", OK, str(found)))
    return out


# ------------------------------------------------------------------------------------------- sd-scripts
def check_sd_scripts(project: Project) -> list[Finding]:
    """The checkout `backend = "sd-scripts"` launches: its scripts and (optionally) its venv."""
    folder = project.sd_scripts_dir
    clone = "git clone https://github.com/kohya-ss/sd-scripts and set [project] sd_scripts_dir to it"
    if folder is None:
        return [Finding.about("sd-scripts", ERROR, 'backend = "sd-scripts" but [project] sd_scripts_dir is not set',
                              clone)]
    if not folder.is_dir():
        return [Finding.about("sd-scripts", ERROR, f"folder not found: {folder}", clone)]
    missing = [name for name in SD_SCRIPTS_FILES if not (folder / name).is_file()]
    if missing:
        return [Finding.about("sd-scripts", ERROR, f"{folder} has no {', '.join(missing)}: not a kohya-ss/sd-scripts "
                              "checkout", "point [project] sd_scripts_dir at the checkout's top folder")]
    out = [Finding.about("sd-scripts", OK, str(folder))]
    for venv in ("venv", ".venv"):
        for python in (folder / venv / "bin" / "python", folder / venv / "Scripts" / "python.exe"):
            if python.exists():
                return [*out, Finding.about("sd-scripts", OK, f"venv python {python}")]
    if shutil.which("accelerate") is None:
        out.append(Finding.about("sd-scripts", WARN, f"no venv in {folder} and no `accelerate` on PATH",
                                 "create sd-scripts' venv as its README says (python -m venv venv; pip install ...)"))
    else:
        out.append(Finding.about("sd-scripts", OK, "no venv in the checkout; `accelerate` from PATH runs it"))
    return out


# ------------------------------------------------------------------------------------------- disk
def estimate_lora_bytes(family: str, dim: int, conv_dim: int | None = None, bytes_per_param: int = 2, *,
                        text_encoder: bool = True, unet: bool = True) -> int:
    """Size of one saved sd-scripts LoRA file: tensors, alphas, safetensors header and metadata."""
    table = LORA_PARAMS_PER_RANK[family]
    parts = [("text_encoder", dim)] if text_encoder else []
    if unet:
        parts.append(("unet", dim))
        if conv_dim:
            parts += [("unet_resnet", dim), ("unet_conv3x3", conv_dim)]
    params = sum(table[name][0] * rank for name, rank in parts)
    adapters = sum(table[name][1] for name, _ in parts)
    return params * bytes_per_param + adapters * (bytes_per_param + 3 * HEADER_BYTES_PER_TENSOR) + METADATA_BYTES


def _intermediate(every: int | None, last_n: int | None, total: int) -> int:
    """Saves before the final one for `save_every_n_*` (capped by `save_last_n_*`), as sd-scripts counts."""
    if not every or total <= 1:
        return 0
    count = (total - 1) // int(every)
    return min(count, int(last_n)) if last_n else count


def planned_saves(training: Mapping[str, Any], epochs: int, total_steps: int) -> tuple[int, int]:
    """(LoRA files, training states) a run writes: periodic saves plus the final one."""
    t = training
    loras = 1 + _intermediate(t.get("save_every_n_epochs"), t.get("save_last_n_epochs"), epochs) + _intermediate(
        t.get("save_every_n_steps"), t.get("save_last_n_steps"), total_steps)
    states = 0
    if t.get("save_state"):
        states += _intermediate(t.get("save_every_n_epochs"),
                                t.get("save_last_n_epochs_state") or t.get("save_last_n_epochs"), epochs)
        states += _intermediate(t.get("save_every_n_steps"),
                                t.get("save_last_n_steps_state") or t.get("save_last_n_steps"), total_steps)
    if t.get("save_state") or t.get("save_state_on_train_end"):
        states += 1
    return loras, states


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_disk(project: Project, family: str, report: Any = None, note: str | None = None) -> list[Finding]:
    """Free space where the run writes against the LoRA files and states it plans to save."""
    from lora_tui.core.configs import output_defaults

    t = project.training
    if report is None and note is None:
        report, note = _steps(project)
    if report is not None:
        epochs, total = report.epochs, report.total_steps
    else:  # estimate from the settings alone
        epochs, total = int(t.get("max_train_epochs") or 1), int(effective(t, "max_train_steps"))
    dim = int(effective(t, "network_dim"))
    conv = network_arg(t, "conv_dim")
    conv_dim = int(float(conv)) if conv and conv.replace(".", "", 1).isdigit() else None
    precision = t.get("save_precision") or ("fp16" if t.get("full_fp16") else "bf16" if t.get("full_bf16") else "float")
    bpp = 4 if precision == "float" else 2
    fam = family if family in LORA_PARAMS_PER_RANK else "sd_v1"
    te, un = not t.get("network_train_unet_only"), not t.get("network_train_text_encoder_only")
    lora = estimate_lora_bytes(fam, dim, conv_dim, bpp, text_encoder=te, unet=un)
    lora32 = estimate_lora_bytes(fam, dim, conv_dim, 4, text_encoder=te, unet=un)
    moments = 2 if "8bit" in str(effective(t, "optimizer_type")).lower() else 8
    state = lora32 + (lora32 - METADATA_BYTES) * moments // 4  # weights + optimizer moments (AdamW: ≈ 3× fp32)
    n_lora, n_state = planned_saves(t, epochs, total)
    need = n_lora * lora + n_state * state
    where = (project.root / "runs") if project.backend == "builtin" else resolve_path(
        project.root, str(t.get("output_dir") or output_defaults(project)["output_dir"]))
    free = shutil.disk_usage(_existing(where)).free
    plan = (f"{n_lora} LoRA file(s) × {human(lora)}" + (f" + {n_state} state(s) × {human(state)}" if n_state else "")
            + f" ≈ {human(need)}; {human(free)} free in {_existing(where)}{note}")
    if free < need:
        return [Finding.about("disk", ERROR, plan, "free space, save less often (save_every_n_epochs) or keep fewer "
                              "(save_last_n_epochs)")]
    if free < need + max(need // 2, 2 * 1000**3):
        return [Finding.about("disk", WARN, plan + " (little headroom for samples and logs)",
                              "free some space before a long run")]
    return [Finding.about("disk", OK, plan)]

