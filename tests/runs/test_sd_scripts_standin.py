"""The sd-scripts stand-in (a fixture replayed by a fake checkout and a fake `accelerate`) behaves like the real run."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lora_tui.runs.sdscripts_log import SdScriptsFollower
from tests.runs.helpers_sdlog import FIXTURES, fixture, follow, of_kind, without_t
from tests.runs.sd_scripts_standin import segments
from tests.runs.standin import STANDIN, install_fake_sd_scripts

LAUNCH = ["accelerate", "launch", "--num_cpu_threads_per_process", "1", "train_network.py",
          "--config_file", "/nowhere/args.toml"]


def launch(tmp_path: Path, name: str, **opts: Any) -> subprocess.Popen[bytes]:
    """Start the fake checkout the way the supervisor starts a real one (own session, SIGINT default)."""
    checkout, path = install_fake_sd_scripts(tmp_path, name, **opts)
    return subprocess.Popen(LAUNCH, cwd=checkout, env={**os.environ, "PATH": path}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_live(proc: subprocess.Popen[bytes], follower: SdScriptsFollower, until_step: int | None = None,
              timeout: float = 20.0) -> list[dict[str, Any]]:
    """Feed the output as it arrives, stamped with the clock; stop at the end or once `until_step` is seen."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            continue
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            events += follower.finish(time.monotonic())
            return events
        events += follower.feed(data, time.monotonic())
        if until_step is not None and any(e["kind"] == "step" and e["step"] >= until_step for e in events):
            return events
    raise AssertionError("the stand-in did not finish in time")


def test_replaying_through_fake_accelerate_gives_the_fixtures_events(tmp_path: Path) -> None:
    name = "sd_scripts_save_every_step_with_state.log"
    proc = launch(tmp_path, name, step_seconds=0.01)
    out, _ = proc.communicate(timeout=20)
    assert out == fixture(name)
    assert without_t(follow(out)[0]) == without_t(follow(fixture(name))[0])
    assert proc.returncode == 0


def test_it_exits_with_the_real_runs_exit_code_or_the_one_asked(tmp_path: Path) -> None:
    failed = launch(tmp_path / "a", "sd_scripts_bad_network_module_traceback.log", step_seconds=0.0)
    failed.communicate(timeout=20)
    asked = launch(tmp_path / "b", "sd_scripts_finished_2epochs.log", step_seconds=0.0, exit_code=3)
    asked.communicate(timeout=20)
    assert (failed.returncode, asked.returncode) == (1, 3)


def test_time_passes_between_steps(tmp_path: Path) -> None:
    proc = launch(tmp_path, "sd_scripts_finished_2epochs.log", step_seconds=0.2)
    events = read_live(proc, SdScriptsFollower())
    proc.wait(timeout=5)
    times = [e["t"] for e in of_kind(events, "step")]
    assert len(times) == 6
    assert min(b - a for a, b in zip(times, times[1:])) > 0.15


def test_sigint_to_the_group_gives_keyboard_interrupts_and_death_by_sigint(tmp_path: Path) -> None:
    proc = launch(tmp_path, "sd_scripts_finished_2epochs.log", step_seconds=0.5)
    follower = SdScriptsFollower()
    events = read_live(proc, follower, until_step=1)
    os.killpg(proc.pid, signal.SIGINT)
    events += read_live(proc, follower)
    assert proc.wait(timeout=5) == -signal.SIGINT  # like real accelerate (fixture sd_scripts_sigint_mid_training.log)
    assert follower.failure_reason() == "KeyboardInterrupt" and not follower.saw_model_saved
    assert [e["code"] for e in of_kind(events, "warn")] == ["interrupted"]
    assert follower.step < 6


def test_nan_at_step_shows_nan_from_that_steps_postfix_draw(tmp_path: Path) -> None:
    proc = launch(tmp_path, "sd_scripts_finished_2epochs.log", step_seconds=0.0, nan_at_step=4)
    out, _ = proc.communicate(timeout=20)
    events, follower = follow(out)
    assert follower.nan_at == 4
    assert [(e["code"], e["step"]) for e in of_kind(events, "error")] == [("nan", 4)]
    assert of_kind(events, "error")[0]["last_good_save"].endswith("judy-000001.safetensors")


def test_a_wrong_working_directory_fails_like_python_does(tmp_path: Path) -> None:
    _, path = install_fake_sd_scripts(tmp_path, "sd_scripts_finished_2epochs.log")
    proc = subprocess.run(LAUNCH, cwd=tmp_path, env={**os.environ, "PATH": path}, capture_output=True, timeout=20)
    assert proc.returncode == 2 and b"can't open file" in proc.stderr


def test_segments_reassemble_to_the_fixture_and_sleep_before_each_new_counter() -> None:
    data = fixture("sd_scripts_grad_accum2_no_prompt_file.log")
    parts = segments(data)
    assert b"".join(chunk for _, chunk in parts) == data
    assert sum(sleep for sleep, _ in parts) == 4  # four optimizer steps, not six micro-batch draws


def test_every_fixture_has_a_manifest_entry_and_the_standin_runs_directly(tmp_path: Path) -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest) == {p.name for p in FIXTURES.glob("*.log")}
    out = subprocess.run([sys.executable, str(STANDIN), str(FIXTURES / "sd_scripts_missing_image_dir_exit0.log"),
                          "--", "--config_file", "x.toml"], capture_output=True, timeout=20)
    assert out.returncode == 0 and out.stdout == fixture("sd_scripts_missing_image_dir_exit0.log")
