"""A run that ends while the app is open: a toast, the bell, and OSC 9 / OSC 777 (wrapped inside tmux)."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core import project
from lora_tui.runs import contract
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.notify import desktop_sequences
from tests.ui import recorded_runs as rr
from tests.ui.settle import wait_until


def test_desktop_notification_is_osc_9_and_777_and_strips_control_characters() -> None:
    seq = desktop_sequences("lora-tui: run failed", "judy failed; \x1b]evil\x07", tmux=False)
    assert seq == ("\x1b]9;lora-tui: run failed: judy failed   ]evil \x07"
                   "\x1b]777;notify;lora-tui: run failed;judy failed   ]evil \x07")


def test_inside_tmux_the_notification_is_wrapped_for_passthrough() -> None:
    seq = desktop_sequences("t", "b", tmux=True)
    assert seq.startswith("\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\") and seq.count("\x1bPtmux;") == 2


def _finish(run_dir: Path, state: str, reason: str) -> None:
    with open(run_dir / contract.EVENTS, "a") as f:
        f.write(json.dumps({"t": rr.T0 + 400, "kind": "end", "state": state, "reason": reason, "exit_code": 1}) + "\n")
    status, _ = contract.read_status(run_dir)
    contract.write_status(run_dir, {**status, "state": state, "reason": reason, "ended_at": rr.T0 + 400})


async def test_a_run_failing_while_the_app_is_open_rings_and_notifies(sample_copy: Path) -> None:
    run_dir = rr.running(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    bells: list[int] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        notifier = await _primed(pilot)
        assert notifier.states[run_dir.name] == "running" and not notifier.sent
        _finish(run_dir, "failed", "loss is NaN at step 121")
        notifier._check()
        await wait_until(pilot, lambda: notifier.sent, "the notification")
        assert bells == [1]
        expected = "\x1b]9;lora-tui: run failed: 20270115-090000-judy failed at step 120/400: loss is NaN"
        assert expected in notifier.sent[0]
        toasts = list(app._notifications)
        assert any(n.severity == "error" and "loss is NaN at step 121" in n.message for n in toasts)


async def test_runs_that_ended_before_the_app_opened_do_not_ring(sample_copy: Path) -> None:
    rr.finished(sample_copy)
    rr.crashed(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(120, 40)) as pilot:
        notifier = await _primed(pilot)
        notifier._check()
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        assert not notifier.sent


async def _primed(pilot):
    app = pilot.app
    await wait_until(pilot, lambda: getattr(app, "run_notifier", None) is not None and app.run_notifier.primed,
                     "the run notifier's first look")
    return app.run_notifier


async def test_a_run_whose_processes_die_without_a_word_is_announced_as_crashed(sample_copy: Path) -> None:
    import subprocess
    import sys

    from lora_tui.runs import liveness

    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    run_dir = rr.running(sample_copy)
    status, _ = contract.read_status(run_dir)
    contract.write_status(run_dir, {**status, **liveness.identify(trainer.pid).to_json()})
    app = LoraTuiApp(project.load(sample_copy))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            notifier = await _primed(pilot)
            assert notifier.states[run_dir.name] == "running"
            trainer.kill()
            trainer.wait()
            notifier._check()
            await wait_until(pilot, lambda: notifier.sent, "the notification")
            assert "lora-tui: run crashed" in notifier.sent[0]
    finally:
        trainer.kill()
