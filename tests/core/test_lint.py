"""Each lint finding: fires on the trap it names, stays quiet on a clean project."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import lint, project
from tests.helpers import image_bytes, write_images, write_project


def _codes(root: Path, **kw) -> dict[str, list[lint.Finding]]:
    report = lint.check_project(project.load(root), **kw)
    out: dict[str, list[lint.Finding]] = {}
    for f in report.findings:
        out.setdefault(f.code, []).append(f)
    return out


def _one(root: Path, subset: dict, *, general: dict | None = None, training: dict | None = None) -> Path:
    return write_project(root, [{"resolution": 512, "enable_bucket": True, "subsets": [subset]}],
                         general=general, training=training)


def test_clean_project_has_no_errors_or_warnings(simple_project: Path) -> None:
    report = lint.check_project(project.load(simple_project))
    assert report.errors == [] and report.warnings == []
    assert report.exit_code(strict=True) == 0


def test_missing_image_dir(tmp_path: Path) -> None:
    found = _codes(_one(tmp_path, {"image_dir": "nope"}))
    assert found["subset-unreadable"][0].severity == "error"
    assert "does not exist" in found["subset-unreadable"][0].message


def test_empty_subset(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert "empty-subset" in _codes(_one(tmp_path, {"image_dir": "a"}))


def test_legacy_folder_depth_trap_points_at_the_importer(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "10_sks dog", [(512, 512)])
    finding = _codes(_one(tmp_path, {"image_dir": "train"}))["legacy-depth"][0]
    assert finding.severity == "error" and "import --legacy" in (finding.fix or "")


def test_uncaptioned_images_with_and_without_class_tokens(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 3, captions={0: "dog"})
    assert "caption-missing" in _codes(_one(tmp_path, {"image_dir": "a"}))
    found = _codes(_one(tmp_path, {"image_dir": "a", "class_tokens": "sks dog"}))
    assert "caption-missing" not in found and found["uses-class-tokens"][0].severity == "info"


def test_caption_extension_mismatch_is_an_error(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 2, captions={0: "dog", 1: "cat"})
    finding = _codes(_one(tmp_path, {"image_dir": "a"}, general={"caption_extension": ".caption"}))[
        "caption-extension"][0]
    assert finding.severity == "error" and '".txt"' in (finding.fix or "")


def test_empty_blank_non_utf8_bom_and_multiline_captions(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 6, captions={0: "", 1: "\n", 2: "ok", 3: "a\nb", 4: "x"})
    (tmp_path / "a" / "img0002.txt").write_bytes(b"caf\xe9")
    (tmp_path / "a" / "img0004.txt").write_bytes("\ufeffdog".encode())
    (tmp_path / "a" / "img0005.txt").mkdir()
    found = _codes(_one(tmp_path, {"image_dir": "a"}))
    assert found["caption-empty"][0].severity == "error"
    assert found["caption-blank"][0].severity == "warning"
    unreadable = " ".join(f.message for f in found["caption-unreadable"])
    assert "not valid UTF-8" in unreadable and "is a folder" in unreadable
    assert "caption-bom" in found and "caption-multiline" in found


def test_broken_images_are_errors(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    write_images(folder, [(512, 512)])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    data = image_bytes((300, 300), "JPEG")
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    found = _codes(_one(tmp_path, {"image_dir": "a", "class_tokens": "x"}))
    messages = " ".join(f.message for f in found["image-unreadable"])
    assert "empty (0 bytes)" in messages and "not a readable image" in messages
    assert "JPEG is truncated" in found["image-corrupt"][0].message


def test_deep_check_decodes(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    path = tmp_path / "a" / "img0000.png"
    data = bytearray(path.read_bytes())
    data[60:80] = b"\0" * 20  # corrupt the pixel data, keep header and IEND
    path.write_bytes(bytes(data))
    assert "image-corrupt" not in _codes(_one(tmp_path, {"image_dir": "a", "class_tokens": "x"}))
    assert "image-corrupt" in _codes(tmp_path, deep=True)


def test_small_images_are_flagged(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(200, 600)])
    assert "image-small" in _codes(_one(tmp_path, {"image_dir": "a", "class_tokens": "x"}))


def test_duplicate_images_by_content(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)] * 2)
    (tmp_path / "a" / "copy.png").write_bytes((tmp_path / "a" / "img0000.png").read_bytes())
    finding = _codes(_one(tmp_path, {"image_dir": "a", "class_tokens": "x"}))["duplicate-image"][0]
    assert "2 identical images" in finding.message and "copy.png" in finding.message


def test_trigger_word_missing_and_shuffled(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 3, captions={0: "judy, smile", 1: "smile", 2: "judyx"})
    found = _codes(_one(tmp_path, {"image_dir": "a", "trigger_word": "judy", "shuffle_caption": True},
                        general={"caption_extension": ".txt", "keep_tokens": 0}))
    assert "missing from 2 of 3 captions" in found["trigger-missing"][0].message
    assert "trigger-shuffled" in found


def test_long_captions_are_counted_and_labelled_as_estimates(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)], captions={0: ", ".join(f"tag{i} word" for i in range(30))})
    finding = _codes(_one(tmp_path, {"image_dir": "a"}))["caption-long"][0]
    assert "estimated" in finding.message and "exceed 75" in finding.message
    longer = _one(tmp_path, {"image_dir": "a"},
                  training={"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 1,
                            "max_token_length": 225})
    assert "caption-long" not in _codes(longer)


def test_latent_caching_with_color_aug_is_an_error(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)], captions={0: "x"})
    found = _codes(_one(tmp_path, {"image_dir": "a", "color_aug": True},
                        training={"network_module": "networks.lora", "learning_rate": 1e-4,
                                  "max_train_epochs": 1, "cache_latents": True}))
    assert found["cache-latents-aug"][0].severity == "error"


@pytest.mark.parametrize("training,code", [
    ({"learning_rate": 1e-4, "max_train_epochs": 1}, "network-module"),
    ({"network_module": "networks.lora", "max_train_epochs": 1}, "lr-default"),
    ({"network_module": "networks.lora", "learning_rate": 1e-4}, "steps-default"),
    ({"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 1, "lr_warmup_steps": 10},
     "warmup-constant"),
    ({"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 1,
      "optimizer_type": "Prodigy"}, "adaptive-lr"),
])
def test_training_settings(tmp_path: Path, training: dict, code: str) -> None:
    write_images(tmp_path / "a", [(512, 512)], captions={0: "x"})
    assert code in _codes(_one(tmp_path, {"image_dir": "a"}, training=training))


def test_missing_model_is_an_error(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)], captions={0: "x"})
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}],
                  model={"pretrained_model_name_or_path": "gone.safetensors"})
    assert "model-missing" in _codes(tmp_path)


def test_exit_codes(tmp_path: Path) -> None:
    assert lint.LintReport([lint.Finding("warning", "x", "m")], "estimate").exit_code() == 0
    assert lint.LintReport([lint.Finding("warning", "x", "m")], "estimate").exit_code(strict=True) == 1
    assert lint.LintReport([lint.Finding("error", "x", "m")], "estimate").exit_code(strict=True) == 2
