"""The CLI as a user drives it: real subprocesses, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LORA_TUI_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lora_tui", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lora-tui: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_new_check_config_from_a_folder_of_images(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    write_images(src, [(512, 512)] * 27, captions={i: f"judy, smile {i}" for i in range(27)})
    proj = tmp_path / "judy"
    assert run("new", str(proj), "--from-images", str(src)).returncode == 0
    (tmp_path / "model.safetensors").write_bytes(b"x")
    text = (proj / "lora-tui.toml").read_text().replace(
        'pretrained_model_name_or_path = ""', f'pretrained_model_name_or_path = "{tmp_path / "model.safetensors"}"')
    (proj / "lora-tui.toml").write_text(text)
    check = run("check", str(proj), "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["errors"] == 0
    config = run("config", str(proj), "--json")
    data = json.loads(config.stdout)
    assert Path(data["dataset_config"]).is_file() and Path(data["args_config"]).is_file()
    assert data["steps_per_epoch"] > 0 and data["total_steps"] == data["steps_per_epoch"] * 10
    assert data["command"].startswith("accelerate launch --num_cpu_threads_per_process 1 train_network.py")


def test_config_prints_breakdown_and_command(simple_project: Path) -> None:
    out = run("config", str(simple_project)).stdout
    assert "27 images × 20 repeats = 540 → 135 steps/epoch at batch 4 × 10 epochs = 1,350 steps" in out
    assert "accelerate launch" in out


def test_check_exit_codes(tmp_path: Path, simple_project: Path) -> None:
    assert run("check", str(simple_project)).returncode == 0
    (simple_project / "data" / "dog" / "img0000.txt").write_text("no trigger here")
    assert run("check", str(simple_project)).returncode == 0
    assert run("check", str(simple_project), "--strict").returncode == 1
    (simple_project / "data" / "dog" / "img0001.txt").write_text("")
    proc = run("check", str(simple_project))
    assert proc.returncode == 2 and "caption file is empty" in proc.stdout


def test_captions_preview_apply_undo(simple_project: Path) -> None:
    cap = simple_project / "data" / "dog" / "img0000.txt"
    preview = run("captions", str(simple_project), "rename", "outdoors", "outside")
    assert preview.returncode == 0 and "27 caption files change" in preview.stdout
    assert "outdoors" in cap.read_text()
    assert run("captions", str(simple_project), "rename", "outdoors", "outside", "--yes").returncode == 0
    assert "outside" in cap.read_text()
    assert "rename tag" in run("captions", str(simple_project), "history").stdout
    assert run("captions", str(simple_project), "undo").returncode == 0
    assert "outdoors" in cap.read_text()
    stats = json.loads(run("captions", str(simple_project), "stats", "--json").stdout)
    assert stats["sks dog"] == 27


def test_import_legacy_cli(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "10_sks dog", [(512, 512)] * 2)
    proc = run("import", "--legacy", str(tmp_path / "train"), "--into", str(tmp_path / "p"))
    assert proc.returncode == 0 and "1 subsets" in proc.stdout


def test_steps_json(simple_project: Path) -> None:
    data = json.loads(run("steps", str(simple_project), "--json").stdout)
    assert data["steps_per_epoch"] == 135 and data["datasets"][0]["buckets"] == {"512x512": 540}


# --- bad input: one line naming the file and the fix, non-zero exit, no traceback ---------------

def test_nonexistent_project(tmp_path: Path) -> None:
    assert_one_line_error(run("check", str(tmp_path / "nope")), "does not exist", "lora-tui new")


def test_invalid_toml_shows_the_line(simple_project: Path) -> None:
    path = simple_project / "lora-tui.toml"
    path.write_text(path.read_text() + "\n[training\n")
    assert_one_line_error(run("config", str(simple_project)), "lora-tui.toml:", "invalid TOML")


def test_unknown_key(simple_project: Path) -> None:
    path = simple_project / "lora-tui.toml"
    path.write_text(path.read_text().replace("num_repeats", "num_repeatz"))
    assert_one_line_error(run("config", str(simple_project)), "num_repeatz", "did you mean 'num_repeats'")


def test_wrong_type(simple_project: Path) -> None:
    path = simple_project / "lora-tui.toml"
    path.write_text(path.read_text().replace("batch_size = 4", "batch_size = 4.0"))
    assert_one_line_error(run("steps", str(simple_project)), "batch_size", "expected an integer")


def test_non_utf8_project_file(simple_project: Path) -> None:
    path = simple_project / "lora-tui.toml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    assert_one_line_error(run("check", str(simple_project)), "not valid UTF-8")


def test_a_read_only_caption_is_reported_and_the_rest_applied(simple_project: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lora_tui import cli
    from lora_tui.core import swap

    cap = simple_project / "data" / "dog" / "img0003.txt"
    cap.chmod(0o444)
    real = os.access  # CI runs as root, who may write anything: answer as for a normal user
    monkeypatch.setattr(swap.os, "access", lambda p, m: not (Path(p) == cap and m == os.W_OK) and real(p, m))
    code = cli.main(["captions", str(simple_project), "add", "extra", "--yes"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 3
    assert out[-2].startswith("applied to 26 of 27 caption files")
    assert out[-1] == (f"1 caption could not be written: data/dog/img0003.txt (read-only (chmod u+w '{cap}' "
                       "to allow edits))")
    assert "extra" not in cap.read_text()
    assert "extra" in (simple_project / "data" / "dog" / "img0000.txt").read_text()
    monkeypatch.undo()
    assert "undo: add tag 'extra' (end) (26 files)" in run("captions", str(simple_project), "undo").stdout
    assert "extra" not in (simple_project / "data" / "dog" / "img0000.txt").read_text()


def test_captions_op_with_missing_argument(simple_project: Path) -> None:
    assert_one_line_error(run("captions", str(simple_project), "rename", "only-one"), "takes OLD NEW")


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run("import", str(tmp_path / "x.toml"), "--into", str(tmp_path / "p")), "not found")


def test_bad_images_and_captions_do_not_crash_any_command(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    write_images(folder, [(512, 512)] * 2, captions={0: "ok"})
    (folder / "zero.png").write_bytes(b"")
    (folder / "fake.jpg").write_text("nope")
    (folder / "img0001.txt").write_bytes(b"\xff\xfe bad")
    os.symlink(folder / "loop.png", folder / "loop.png")
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}])
    for args in (("check",), ("steps",), ("config",), ("captions",)):
        cmd = [args[0], str(tmp_path)] + (["stats"] if args[0] == "captions" else [])
        proc = run(*cmd)
        assert "Traceback" not in proc.stderr + proc.stdout, (args, proc.stderr)
    check = run("check", str(tmp_path))
    assert check.returncode == 2
    for fragment in ("zero.png", "fake.jpg", "loop.png", "not valid UTF-8"):
        assert fragment in check.stdout
