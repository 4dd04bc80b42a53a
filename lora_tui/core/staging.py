"""Leaving excluded images out of training without touching the user's folders.

sd-scripts trains on every image in an ``image_dir``. When the review marks exclude some images of
a subset, or some of its files are not readable images (empty, no image header, cut short: a crash
in sd-scripts' loader, or a silently smaller dataset in ours), the generated config points that
subset at ``.lora-tui/staging/<subset>/`` instead (a run gets its own, ``runs/<id>/staging/<subset>/``):
a folder of symlinks to the subset's other images and their caption sidecars, rebuilt on every
``config``. Subsets with nothing left out keep their real folder. Fine-tuning (metadata) subsets list
their images in the metadata file and are not staged.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lora_tui.core import images
from lora_tui.core.captions import find_caption
from lora_tui.core.errors import ConfigError, LoraTuiError
from lora_tui.core.project import Project, Subset
from lora_tui.core.review import ReviewMarks


def excluded_paths(project: Project) -> set[Path]:
    """Absolute paths of the images marked excluded in this project."""
    marks = ReviewMarks(project.root)
    return {Path(k) if os.path.isabs(k) else project.root / k for k in marks.excluded()}


@dataclass(frozen=True)
class LeftOut:
    """The images no backend is given: marked excluded in review, or not readable as images."""

    marked: frozenset[Path] = frozenset()
    unreadable: dict[Path, str] = field(default_factory=dict)  # path → why it is not an image

    @property
    def paths(self) -> set[Path]:
        return set(self.marked) | set(self.unreadable)

    def lines(self) -> list[str]:
        """One line per kind, naming the first few files (``lora-tui check`` names every one)."""
        out = []
        if self.marked:
            out.append(f"left out: {len(self.marked)} image(s) marked excluded ({_names(self.marked)})")
        if self.unreadable:
            out.append(f"left out: {len(self.unreadable)} file(s) that are not readable images "
                       f"({_names(self.unreadable)}); lora-tui check says why")
        return out


def _names(paths: set[Path] | frozenset[Path] | dict[Path, str]) -> str:
    names = sorted(p.name for p in paths)
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "")


def left_out(project: Project, scans: list | None = None) -> LeftOut:
    """What staging leaves out of this project's training data. Reads every image's header and tail
    (one scan; ``scans`` reuses one already made, and sizes it already read)."""
    from lora_tui.core import scan as scanning

    unreadable: dict[Path, str] = {}
    for result in scans if scans is not None else scanning.scan_project(project, read_captions=False):
        if result.error or result.subset.values.get("metadata_file"):
            continue
        scanning.fill_sizes(result.records)
        unreadable.update((r.path, r.unreadable) for r in result.records if r.unreadable)
    return LeftOut(frozenset(excluded_paths(project)), unreadable)


def default_root(project: Project) -> Path:
    """Where ``lora-tui config`` stages; each run stages in its own folder (``runs/<id>/staging``)."""
    return project.state_dir / "staging"


def staging_dir(project: Project, subset: Subset, root: Path | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in subset.name)[:40] or "subset"
    return (root or default_root(project)) / f"{subset.dataset_index}.{subset.index}-{safe}"


def staged_subsets(project: Project, excluded: set[Path], root: Path | None = None) -> dict[tuple[int, int], Path]:
    """Which subsets need a staging folder (they have excluded images): (dataset, subset) → folder."""
    out = {}
    for sub in project.subsets:
        folder = sub.image_dir
        if folder is None or sub.values.get("metadata_file"):
            continue
        if any(p.parent == folder for p in excluded):
            out[(sub.dataset_index, sub.index)] = staging_dir(project, sub, root)
    return out


def build_staging(project: Project, excluded: set[Path], root: Path | None = None) -> dict[tuple[int, int], Path]:
    """(Re)create the symlink folders for subsets with exclusions; returns them like staged_subsets.
    ``root`` is the folder they go in (one per run, so two runs never share one)."""
    root = root or default_root(project)
    staged = staged_subsets(project, excluded, root)
    try:
        if root.exists():
            shutil.rmtree(root)
        for (di, si), folder in staged.items():
            sub = project.datasets[di].subsets[si]
            assert sub.image_dir is not None
            folder.mkdir(parents=True)
            listing = images.list_folder(sub.image_dir)
            ext = sub.get("caption_extension")
            for image in listing.images:
                if image in excluded:
                    continue
                os.symlink(image, folder / image.name)
                caption = find_caption(image, ext, listing.names)
                if caption is not None and not (folder / caption.name).exists():
                    os.symlink(caption, folder / caption.name)
    except LoraTuiError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot build the staging folder for excluded images: {exc.strerror or exc}",
                          path=root, hint="check that the folder is writable") from None
    return staged
