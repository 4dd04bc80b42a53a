"""Lint: everything that would make sd-scripts fail, or train on something other than intended.

Findings are errors (training would fail or silently drop data) or warnings (it runs, but probably
not as meant), each naming the file and the fix. Image checks read headers and file tails only;
``deep=True`` decodes every image with Pillow as well. The settings checks (model, training
arguments, backend) are ``lint_settings``; fine-tuning metadata subsets' are ``lint_metadata``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core import clip_tokens, images, unsaved
from lora_tui.core.findings import ERROR, INFO, WARNING, Finding
from lora_tui.core.fsio import leftover_tmps, pid_alive, tmp_owner
from lora_tui.core.lint_metadata import check_keys, check_replaced
from lora_tui.core.lint_settings import check_settings
from lora_tui.core.project import Project, Subset
from lora_tui.core.scan import SubsetScan, fill_sizes, scan_project

LEGACY_DIR = re.compile(r"^(\d+)_(.*)$")
OTHER_IMAGE_EXTS = (".gif", ".tif", ".tiff", ".heic", ".jfif")


@dataclass
class LintReport:
    findings: list[Finding]
    token_counter: str  # "clip" (real tokenizer) or "estimate"

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def exit_code(self, strict: bool = False) -> int:
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0


def _some(paths: list[Path], n: int = 3) -> str:
    names = ", ".join(p.name for p in paths[:n])
    return names + (f" (+{len(paths) - n} more)" if len(paths) > n else "")


class LintCancelled(Exception):
    """Raised when ``should_stop`` says the caller no longer wants the report."""


def check_project(project: Project, *, deep: bool = False, scans: list[SubsetScan] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> LintReport:
    """Run every check; ``scans`` may be passed in to reuse a scan the caller already made.

    ``should_stop`` is polled between subsets and every few hundred files, so a UI can abandon a
    long lint of thousands of images (it raises :class:`LintCancelled`).
    """
    stop = should_stop or (lambda: False)
    out: list[Finding] = []
    add: Callable[..., None] = lambda *a, **k: out.append(Finding(*a, **k))  # noqa: E731
    check_settings(project, add)
    _check_leftovers(project, project.state_dir / "tmp", sorted(p.name for p in leftover_tmps(
        project.state_dir / "tmp")), "the caption journal", add)
    kept = unsaved.stashed(project.root)
    if kept:
        add(WARNING, "unsaved-edits", f"{len(kept)} caption edit(s) could not be saved when the app closed and are "
            f"kept ({', '.join(p.name for p in kept[:3])}{' …' if len(kept) > 3 else ''})",
            str(unsaved.folder(project.root)), "copy each over its caption (its .json note names it), then delete it")
    scans = scans if scans is not None else scan_project(project)
    tokenizer = clip_tokens.find_tokenizer(project.model_path, _tokenizer_dirs(project))
    seen: dict[tuple[int, str], Subset] = {}
    all_records = []
    for scan in scans:
        sub = scan.subset
        key = (sub.dataset_index, str(sub.values.get("metadata_file") or sub.image_dir))
        if key in seen:
            add(WARNING, "duplicate-subset", f"{sub.label} repeats the folder of {seen[key].label}; "
                "sd-scripts drops it", str(project.file), "remove one of the two subsets")
        seen[key] = sub
        if stop():
            raise LintCancelled
        _check_subset(project, scan, add, tokenizer, deep, stop)
        all_records.extend(scan.records)
    _check_duplicates(all_records, add, stop)
    check_replaced(project, scans, add)
    if not any(not s.subset.is_reg and s.records and not s.error and int(s.subset.get("num_repeats")) >= 1
               for s in scans):
        add(ERROR, "nothing-to-train", "no training images: every training subset is empty, unreadable or has "
            "num_repeats < 1 (sd-scripts stops with 'No data found')", str(project.file),
            "add images to a subset or set its num_repeats to 1 or more")
    return LintReport(out, "clip" if tokenizer else "estimate")


def _tokenizer_dirs(project: Project) -> list[Path]:
    raw = project.model.get("tokenizer_cache_dir")
    return [project.root / raw] if raw else []


def _check_leftovers(project: Project, folder: Path | None, names: list[str], what: str,
                     add: Callable[..., None]) -> None:
    """Temporary files of ours whose writer is gone (a crash mid-write that no recovery removed)."""
    if names and folder is not None:
        add(WARNING, "leftover-temp", f"{what}: {len(names)} temporary files left by interrupted writes "
            f"({', '.join(names[:3])}{', …' if len(names) > 3 else ''})", str(folder),
            f"remove them: lora-tui captions {project.root} clean")


def _check_subset(project: Project, scan: SubsetScan, add: Callable[..., None],
                  tokenizer: clip_tokens.ClipTokenizer | None, deep: bool, stop: Callable[[], bool]) -> None:
    sub = scan.subset
    folder = sub.image_dir
    where = str(folder) if folder else str(project.file)
    if scan.error:
        add(ERROR, "subset-unreadable", f"{sub.label}: {scan.error}", where,
            "fix image_dir in lora-tui.toml")
        return
    _check_leftovers(project, folder, sorted(n for n in scan.names if n.startswith(".") and (
        pid := tmp_owner(n)) is not None and not pid_alive(pid)), sub.label, add)
    if int(sub.get("num_repeats")) < 1:
        add(WARNING, "repeats-zero", f"{sub.label}: num_repeats < 1, sd-scripts ignores this subset",
            str(project.file), "set num_repeats to 1 or more")
    records = scan.records
    if not records:
        legacy = [d for d in scan.subdirs if LEGACY_DIR.match(d)]
        if legacy:
            add(ERROR, "legacy-depth", f"{sub.label}: no images here, but {len(legacy)} '<repeats>_<name>' "
                f"subfolders ({', '.join(legacy[:3])}); sd-scripts does not look into subfolders", where,
                f"run: lora-tui import --legacy {folder} --into {project.root}")
        elif scan.subdirs:
            add(ERROR, "empty-subset", f"{sub.label}: no images directly in the folder (only subfolders: "
                f"{', '.join(scan.subdirs[:3])}); sd-scripts does not recurse", where,
                "point image_dir at the folder that holds the images")
        else:
            add(ERROR, "empty-subset", f"{sub.label}: no images", where, "add images or remove the subset")
        return
    if scan.odd_images:
        add(WARNING, "odd-extension", f"{sub.label}: {len(scan.odd_images)} image files sd-scripts will not "
            f"pick up ({', '.join(scan.odd_images[:3])})", where,
            "use a .png/.jpg/.jpeg/.webp/.bmp extension (lower or upper case, not mixed)")
    others = [n for n in scan.names if n.lower().endswith(OTHER_IMAGE_EXTS)]
    if others:
        add(WARNING, "unsupported-format", f"{sub.label}: {len(others)} files in a format sd-scripts skips "
            f"({', '.join(sorted(others)[:3])})", where, "convert them to PNG or JPEG")
    if sub.values.get("metadata_file"):
        scan = check_keys(project, scan, add)
    _check_images(sub, scan, add, deep, stop)
    if sub.values.get("metadata_file"):
        _check_caption_lengths(project, sub, scan, add, tokenizer)
        return
    _check_captions(sub, scan, add)
    _check_caption_lengths(project, sub, scan, add, tokenizer)


def _check_images(sub: Subset, scan: SubsetScan, add: Callable[..., None], deep: bool,
                  stop: Callable[[], bool]) -> None:
    fill_sizes(scan.records)
    bad = [r for r in scan.records if r.size_error]
    for r in bad[:20]:
        add(ERROR, "image-unreadable", r.size_error or "", None, "re-export or remove the image")
    if len(bad) > 20:
        add(ERROR, "image-unreadable", f"{sub.label}: {len(bad) - 20} more unreadable images", str(sub.image_dir))
    truncated = []
    for i, r in enumerate(scan.records):
        if i % 256 == 0 and stop():
            raise LintCancelled
        if r.size_error:
            continue
        if deep:
            why = images.verify_decode(r.path)
        else:  # fill_sizes checked size and tail; sizes from a metadata file were not checked yet
            why = r.damage if r.checked else images.check_complete(r.path)
        if why:
            truncated.append((r.path, why))
    for path, why in truncated[:20]:
        add(ERROR, "image-corrupt", why, str(path), "re-export or remove the image")
    if len(truncated) > 20:
        add(ERROR, "image-corrupt", f"{sub.label}: {len(truncated) - 20} more corrupt images", str(sub.image_dir))
    _check_pixel_notes(sub, scan, add)
    if sub.get("enable_bucket") and not sub.get("bucket_no_upscale"):
        limit = int(sub.get("min_bucket_reso"))
        small = [r.path for r in scan.records if r.size and min(r.size) < limit]
        if small:
            add(WARNING, "image-small", f"{sub.label}: {len(small)} images have a side under "
                f"min_bucket_reso {limit} and will be upscaled ({_some(small)})", str(sub.image_dir),
                "use larger source images")
    elif sub.get("enable_bucket") and sub.get("bucket_no_upscale"):
        step = int(sub.get("bucket_reso_steps"))
        tiny = [r.path for r in scan.records if r.size and min(r.size) < step]
        if tiny:
            add(ERROR, "image-tiny", f"{sub.label}: {len(tiny)} images are smaller than bucket_reso_steps "
                f"{step} and cannot be bucketed without upscaling ({_some(tiny)})", str(sub.image_dir),
                "remove them or turn off bucket_no_upscale")


def _check_pixel_notes(sub: Subset, scan: SubsetScan, add: Callable[..., None]) -> None:
    """Files sd-scripts trains on, but not as the user sees them (notes from the header read)."""
    for note, code, one, many, how, fix in (
            (images.GRAY16, "image-16bit", "1 image is a 16-bit grayscale PNG",
             "{n} images are 16-bit grayscale PNGs", "which sd-scripts (and lora-tui, to train the same) reads as "
             "almost white", "save them as 8-bit PNGs (ImageMagick: mogrify -depth 8 *.png)"),
            (images.EXIF_TURNED, "image-exif-rotated", "1 image carries an EXIF rotation",
             "{n} images carry an EXIF rotation", "which viewers (and the preview here) apply but sd-scripts (and "
             "lora-tui, to train the same) does not: they train turned or mirrored",
             "save them with the rotation applied (ImageMagick: mogrify -auto-orient *.jpg; or exiftran -ai *.jpg)")):
        odd = [r.path for r in scan.records if r.pixel_note == note and not r.unreadable]
        if odd:
            what = one if len(odd) == 1 else many.format(n=len(odd))
            add(WARNING, code, f"{sub.label}: {what}, {how} ({_some(odd)})", str(sub.image_dir), fix)


def _check_captions(sub: Subset, scan: SubsetScan, add: Callable[..., None]) -> None:
    ext = sub.get("caption_extension")
    where = str(sub.image_dir)
    records = [r for r in scan.records if not r.unreadable]  # not images: reported above, never trained on
    if not records:
        return
    missing = [r.path for r in records if r.caption_path is None]
    if missing:
        other = _other_extension(scan, ext)
        if other and len(missing) == len(records):
            add(ERROR, "caption-extension", f"{sub.label}: captions are {other} files but caption_extension "
                f"is '{ext}', so every caption would be ignored", where,
                f'set caption_extension = "{other}" in lora-tui.toml')
        elif sub.get("class_tokens"):
            add(INFO, "uses-class-tokens", f"{sub.label}: {len(missing)} images have no caption file and "
                f"train on class_tokens '{sub.get('class_tokens')}'", where)
        else:
            add(WARNING, "caption-missing", f"{sub.label}: {len(missing)} images have neither a caption file "
                f"nor class_tokens and train on an empty caption ({_some(missing)})", where,
                "write captions or set class_tokens on the subset")
        if other and len(missing) < len(records):
            add(WARNING, "caption-extension", f"{sub.label}: some captions are {other} files but "
                f"caption_extension is '{ext}'", where, "rename them to one extension")
    for r in records:
        if r.caption_error:
            add(ERROR, "caption-unreadable", r.caption_error, None, "re-save the caption as a UTF-8 text file")
    empty = [r.caption_path for r in records if r.caption is not None and r.caption.is_empty_file]
    if empty:
        add(ERROR, "caption-empty", f"{sub.label}: {len(empty)} caption files are empty; sd-scripts stops "
            f"with 'caption file is empty' ({_some(empty)})", where, "write a caption or delete the file")
    blank = [r.caption_path for r in records if r.caption and not r.caption.is_empty_file
             and not r.caption.effective(bool(sub.get("enable_wildcard")))]
    if blank:
        add(WARNING, "caption-blank", f"{sub.label}: {len(blank)} captions have an empty first line "
            f"({_some(blank)})", where, "put the caption on the first line")
    bom = [r.caption_path for r in records if r.caption and r.caption.had_bom]
    if bom:
        add(WARNING, "caption-bom", f"{sub.label}: {len(bom)} captions start with a UTF-8 BOM, which "
            f"sd-scripts keeps inside the first tag ({_some(bom)})", where,
            "any lora-tui caption edit rewrites them without it")
    if not sub.get("enable_wildcard"):
        multi = [r.caption_path for r in records if r.caption and r.caption.ignored_lines]
        if multi:
            add(WARNING, "caption-multiline", f"{sub.label}: {len(multi)} captions have more than one line; "
                f"only the first is used ({_some(multi)})", where,
                "join the lines or set enable_wildcard = true")
    trigger = sub.trigger_word
    if trigger:
        pattern = re.compile(rf"(?<!\w){re.escape(trigger)}(?!\w)", re.IGNORECASE)
        lacking = [r.path for r in records
                   if not pattern.search(r.text(bool(sub.get("enable_wildcard")))
                                         or str(sub.get("class_tokens") or ""))]
        if lacking:
            add(WARNING, "trigger-missing", f"{sub.label}: trigger word '{trigger}' missing from "
                f"{len(lacking)} of {len(records)} captions ({_some(lacking)})", where,
                f"run: lora-tui captions {sub.root} trigger '{trigger}'")
        if sub.get("shuffle_caption") and int(sub.get("keep_tokens") or 0) < 1 \
                and not sub.get("keep_tokens_separator"):
            add(WARNING, "trigger-shuffled", f"{sub.label}: shuffle_caption is on with keep_tokens = 0, so "
                f"the trigger word '{trigger}' is shuffled like any tag", where, "set keep_tokens = 1")


def _other_extension(scan: SubsetScan, ext: str) -> str | None:
    stems = {r.path.stem for r in scan.records}
    for cand in (".txt", ".caption", ".cap", ".tags"):
        if cand != ext and any(Path(n).stem in stems and n.endswith(cand) for n in scan.names):
            return cand
    return None


def _check_caption_lengths(project: Project, sub: Subset, scan: SubsetScan, add: Callable[..., None],
                           tokenizer: clip_tokens.ClipTokenizer | None) -> None:
    limit = int(project.args.get("max_token_length") or 75)
    count = tokenizer.count if tokenizer else clip_tokens.estimate_tokens
    prefix, suffix = sub.get("caption_prefix") or "", sub.get("caption_suffix") or ""
    wildcard = bool(sub.get("enable_wildcard"))
    over = []
    for r in scan.records:
        if r.unreadable:
            continue
        text = r.text(wildcard) if r.caption_path or r.meta_caption is not None else sub.get("class_tokens")
        if not text:
            continue
        for line in text.split("\n"):
            full = " ".join(x for x in (prefix, line, suffix) if x)
            n = count(full)
            if n > limit:
                over.append((r.caption_path or r.path, n))
                break
    if over:
        how = "CLIP tokenizer" if tokenizer else "estimated; no CLIP tokenizer found"
        worst = max(over, key=lambda x: x[1])
        add(WARNING, "caption-long", f"{sub.label}: {len(over)} captions exceed {limit} CLIP tokens "
            f"(longest {worst[1]} tokens, {how}): text past the limit is cut off", str(worst[0]),
            "shorten them or set max_token_length = 150 / 225 in [training]")


def _check_duplicates(records: list, add: Callable[..., None], stop: Callable[[], bool]) -> None:
    by_size: dict[int, list[Path]] = defaultdict(list)
    for r in records:
        if r.size_error:
            continue
        try:
            by_size[r.path.stat().st_size].append(r.path)
        except OSError:
            continue
    groups: dict[str, list[Path]] = defaultdict(list)
    for paths in by_size.values():
        if len(paths) < 2:
            continue
        if stop():
            raise LintCancelled
        for path in paths:
            try:
                groups[images.content_hash(path)].append(path)
            except OSError:
                continue
    dupes = [sorted(g) for g in groups.values() if len(g) > 1]
    for group in dupes[:20]:
        add(WARNING, "duplicate-image", f"{len(group)} identical images: " + ", ".join(map(str, group[:4])),
            str(group[0]), "keep one copy unless the repetition is deliberate (use num_repeats)")

