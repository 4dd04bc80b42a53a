"""Lint for SDXL models: family/setting mismatches, 1024-class resolutions, TE-output caching rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import configs, lint, model_family, project
from lora_tui.core.errors import ConfigError
from tests.helpers import write_images, write_project
from tests.helpers_models import write_header_only_model

TRAINING = {"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 2}


def _project(root: Path, family: str = "sdxl", *, model: dict | None = None, training: dict | None = None,
             resolution: int = 1024, general: dict | None = None, backend: str = "sd-scripts") -> Path:
    write_images(root / "data" / "dog", [(1024, 1024)] * 3, captions={i: f"dog {i}" for i in range(3)})
    write_project(root, [{"resolution": resolution, "subsets": [{"image_dir": "data/dog", "num_repeats": 1}]}],
                  model={"pretrained_model_name_or_path": "model.safetensors", **(model or {})},
                  training={**TRAINING, **(training or {})}, general=general)
    write_header_only_model(root / "model.safetensors", family)
    text = (root / "lora-tui.toml").read_text()
    checkout = root / "sd-scripts"
    for script in ("train_network.py", "sdxl_train_network.py"):
        (checkout / script).parent.mkdir(parents=True, exist_ok=True)
        (checkout / script).write_text("")
    (root / "lora-tui.toml").write_text(text.replace('[project]\nname = "proj"',
                                                     f'[project]\nname = "proj"\nbackend = "{backend}"\n'
                                                     f'sd_scripts_dir = "{checkout}"'))
    return root


def _codes(root: Path) -> dict[str, list[lint.Finding]]:
    out: dict[str, list[lint.Finding]] = {}
    for f in lint.check_project(project.load(root)).findings:
        out.setdefault(f.code, []).append(f)
    return out


def test_a_clean_sdxl_project_on_sd_scripts_has_no_family_findings(tmp_path: Path) -> None:
    codes = _codes(_project(tmp_path))
    assert not [c for c in codes if c.startswith(("family", "sdxl", "te-cache"))]
    assert model_family.detect_family(tmp_path / "model.safetensors") == "sdxl"


def test_v2_on_an_sdxl_file_is_an_error(tmp_path: Path) -> None:
    (finding,) = _codes(_project(tmp_path, model={"v2": True}))["family-v2"]
    assert finding.severity == "error" and "SDXL" in finding.message and "remove v2" in finding.fix


def test_v2_on_an_sd1_file_is_an_error_and_sd2_without_it_on_sd_scripts_too(tmp_path: Path) -> None:
    assert _codes(_project(tmp_path / "a", "sd_v1", model={"v2": True}, resolution=512))["family-v2"]
    assert _codes(_project(tmp_path / "b", "sd_v2", resolution=512))["family-v2"]


def test_resolution_below_1024_on_sdxl_is_a_warning_with_the_reason(tmp_path: Path) -> None:
    (finding,) = _codes(_project(tmp_path, resolution=512))["sdxl-resolution"]
    assert finding.severity == "warning" and "1024" in finding.message and "resolution = 1024" in finding.fix


def test_the_built_in_backend_takes_sdxl_without_a_finding(tmp_path: Path) -> None:
    """The built-in trainer trains SDXL (issue 13): no backend refusal any more."""
    assert "sdxl-builtin" not in _codes(_project(tmp_path, backend="builtin"))


def test_te_output_caching_needs_unet_only_and_no_caption_shuffling(tmp_path: Path) -> None:
    codes = _codes(_project(tmp_path, training={"cache_text_encoder_outputs": True},
                            general={"caption_extension": ".txt", "shuffle_caption": True}))
    assert codes["te-cache-unet-only"][0].severity == "error"
    assert "shuffle_caption" in codes["te-cache-captions"][0].message


def test_sdxl_only_options_on_an_sd1_model_are_errors(tmp_path: Path) -> None:
    codes = _codes(_project(tmp_path, "sd_v1", resolution=512, training={"cache_text_encoder_outputs": True}))
    assert "train_network.py would silently ignore it" in codes["sdxl-only-option"][0].message


def test_fp16_without_no_half_vae_on_sdxl_is_a_warning(tmp_path: Path) -> None:
    assert _codes(_project(tmp_path, training={"mixed_precision": "fp16"}))["sdxl-half-vae"]
    assert "sdxl-half-vae" not in _codes(_project(tmp_path / "b", training={"mixed_precision": "fp16",
                                                                             "no_half_vae": True}))


def test_bucket_steps_of_32_load_for_sdxl_but_not_for_sd1(tmp_path: Path) -> None:
    general = {"caption_extension": ".txt", "bucket_reso_steps": 32}
    project.load(_project(tmp_path / "xl", general=general))
    with pytest.raises(ConfigError, match="multiple of 64"):
        project.load(_project(tmp_path / "sd1", "sd_v1", general=general, resolution=512))


def test_generated_command_runs_sdxl_train_network_for_an_sdxl_model(tmp_path: Path) -> None:
    built = configs.build(project.load(_project(tmp_path)))
    assert Path(built.argv[built.argv.index("--config_file") - 1]).name == "sdxl_train_network.py"
    sd1 = configs.build(project.load(_project(tmp_path / "sd1", "sd_v1", resolution=512)))
    assert Path(sd1.argv[sd1.argv.index("--config_file") - 1]).name == "train_network.py"


def test_sdxl_options_are_written_to_the_args_file(tmp_path: Path) -> None:
    root = _project(tmp_path, training={"cache_text_encoder_outputs": True, "network_train_unet_only": True,
                                        "no_half_vae": True})
    text = configs.build(project.load(root)).args_text
    assert "cache_text_encoder_outputs = true" in text and "no_half_vae = true" in text


def test_new_project_for_an_sdxl_model_trains_at_1024_on_the_built_in_trainer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lora_tui.cli import main

    model = write_header_only_model(tmp_path / "models" / "xl.safetensors", "sdxl")
    assert main(["new", str(tmp_path / "p"), "--model", str(model)]) == 0
    assert "SDXL" in capsys.readouterr().out
    loaded = project.load(tmp_path / "p")
    assert loaded.backend == "builtin" and loaded.model_path == model  # it trains SDXL since issue 13
    assert loaded.datasets[0].get("resolution") == 1024 and loaded.general["max_bucket_reso"] == 2048
    assert loaded.training["no_half_vae"] is True
    codes = {f.code for f in lint.check_project(loaded).findings}
    assert not {"sdxl-resolution", "sdxl-builtin", "family-v2"} & codes


def test_new_project_for_an_sd2_model_sets_v2(tmp_path: Path) -> None:
    from lora_tui.cli import main

    model = write_header_only_model(tmp_path / "sd2.safetensors", "sd_v2")
    assert main(["new", str(tmp_path / "p"), "--model", str(model)]) == 0
    loaded = project.load(tmp_path / "p")
    assert loaded.model["v2"] is True and loaded.backend == "builtin"
    assert loaded.datasets[0].get("resolution") == 512


def test_sdxl_defaults_give_1024_class_aspect_buckets() -> None:
    """With sd-scripts' max_bucket_reso 1024 a 3:2 photo at 1024 is squeezed into 1024×704; the SDXL
    default (2048) gives sd-scripts' 1216×832 bucket, the same ≈1 MP area SDXL was trained at."""
    from lora_tui.core.buckets import BucketPlan
    from lora_tui.core.scaffold import DEFAULT_GENERAL, FAMILY_DEFAULTS

    keys = ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")
    sd_default = BucketPlan((1024, 1024), **{k: DEFAULT_GENERAL[k] for k in keys})
    sdxl = BucketPlan((1024, 1024), **{k: {**DEFAULT_GENERAL, **FAMILY_DEFAULTS["sdxl"]["general"]}[k] for k in keys})
    assert sd_default.select(1536, 1024).bucket == (1024, 704)
    assert sdxl.select(1536, 1024).bucket == (1216, 832)


def test_a_built_in_reference_has_its_family_before_it_is_built(tmp_path: Path) -> None:
    from lora_tui.core.model_family import SD1, family_of_value

    assert family_of_value("lora-tui:tiny-sd15", tmp_path) == SD1  # nothing built in this test's cache
    assert family_of_value("lora-tui:nope", tmp_path) is None and family_of_value("org/name", tmp_path) is None
