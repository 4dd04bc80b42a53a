"""Telling the user a run ended, failed or crashed: a toast, the terminal bell and a desktop notification.

The desktop notification is an OSC escape the terminal turns into a system notification: OSC 9
(iTerm2, WezTerm, Windows Terminal, foot, kitty) and OSC 777 (urxvt's notify, VTE terminals such as
GNOME Terminal, Konsole). Terminals that know neither ignore them. Inside tmux the escapes are
wrapped for passthrough (tmux needs ``set -g allow-passthrough on``).

The watcher is cheap: every few seconds a worker lists runs/ (one scandir), reads status.json of
folders it has not seen, and concludes the state only of runs it last saw active or queued.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

from lora_tui.runs import contract, reader

CHECK_S = 3.0
WATCHED = contract.ACTIVE | {"queued"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f;]")


def _clean(text: str, limit: int = 200) -> str:
    """No control characters (an escape inside would end ours early) and no ``;`` (OSC 777 separator)."""
    return _CONTROL.sub(" ", text)[:limit]


def tmux_wrap(sequence: str) -> str:
    """A DCS passthrough: tmux hands the inner escape to the outer terminal (allow-passthrough on)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def desktop_sequences(title: str, body: str, *, tmux: bool | None = None) -> str:
    """OSC 9 and OSC 777 notifications, wrapped for tmux when running inside it."""
    tmux = bool(os.environ.get("TMUX")) if tmux is None else tmux
    title, body = _clean(title, 80), _clean(body)
    sequences = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    return "".join(tmux_wrap(s) if tmux else s for s in sequences)


def announcement(info: reader.RunInfo) -> tuple[str, str, str]:
    """(title, body, toast severity) for a run that just ended."""
    steps = f"step {info.step}/{info.total_steps}" if info.total_steps else f"step {info.step}"
    title = f"lora-tui: run {info.state}"
    body = f"{info.id} {info.state} at {steps}"
    if info.state != "finished" and info.reason:
        body += f": {info.reason}"
    severity = {"finished": "information", "stopped": "warning"}.get(info.state, "error")
    return title, body, severity


class RunNotifier:
    """Follows a project's runs from the app and announces each end it sees happen."""

    def __init__(self, app: Any, root: Path, interval: float = CHECK_S) -> None:
        self.app, self.root, self.interval = app, Path(root), interval
        self.states: dict[str, str] = {}
        self.started = time.time()
        self.sent: list[str] = []  # the escapes written (tests read them)
        self.primed = False

    def start(self) -> None:
        self._check()
        self.timer = self.app.set_interval(self.interval, self._check)

    def _check(self) -> None:
        self.app.run_worker(self.scan, thread=True, group="run-notifier", exclusive=True, exit_on_error=False)

    def scan(self) -> None:
        ended = []
        for run_dir in reader.run_dirs(self.root):
            name = run_dir.name
            known = self.states.get(name)
            if known is not None and known not in WATCHED:
                continue  # ended before: nothing more will happen to it
            status, problem = contract.read_status(run_dir)
            if problem == "status.json is missing" and not (run_dir / "run.toml").exists():
                continue
            state = status.get("state")
            if state in WATCHED or known in WATCHED:
                info = reader.read_run(run_dir, tail=50, read=(status, problem))
                state = info.state
                if known in WATCHED and state in contract.FINAL:
                    ended.append(info)
            elif known is None and self.primed and state in contract.FINAL and \
                    (status.get("ended_at") or 0) >= self.started:
                ended.append(reader.read_run(run_dir, tail=50, read=(status, problem)))  # born and ended between looks
            self.states[name] = str(state)
        self.primed = True
        for info in ended:
            self.app.call_from_thread(self.announce, info)

    def announce(self, info: reader.RunInfo) -> None:
        title, body, severity = announcement(info)
        self.app.notify(body, title=title, severity=severity, timeout=30, markup=False)
        self.app.bell()
        sequence = desktop_sequences(title, body)
        self.sent.append(sequence)
        driver = getattr(self.app, "_driver", None)
        if driver is not None:
            with contextlib.suppress(Exception):  # a terminal gone away: the toast was enough
                driver.write(sequence)
                driver.flush()
