"""One finding type for every check lora-tui runs: ``check`` (lint) and ``doctor`` alike.

A finding is a severity, a code (lint: what is wrong, ``caption-empty``; doctor: what was checked,
``torch``, ``gpu0``), the message, where (a file or folder, when there is one) and the fix. The two
commands print them in their own layouts (:meth:`Finding.line`, :meth:`Finding.status_line`), so a
UI or a script reads both the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"


@dataclass(frozen=True)
class Finding:
    severity: str  # ok | info | warning | error
    code: str
    message: str
    path: str | None = None
    fix: str | None = None

    @classmethod
    def about(cls, topic: str, severity: str, message: str, fix: str | None = None) -> Finding:
        """A doctor finding: what was checked (torch, gpu0, model…), how it stands, the fix."""
        return cls(severity, topic, message, None, fix)

    @property
    def name(self) -> str:
        """The doctor's word for the code: the topic that was checked."""
        return self.code

    def line(self) -> str:
        """`lora-tui check`'s line: ``error: path: message → fix``."""
        where = f"{self.path}: " if self.path else ""
        fix = f" → {self.fix}" if self.fix else ""
        return f"{self.severity}: {where}{self.message}{fix}"

    def status_line(self) -> str:
        """`lora-tui doctor`'s line, severity first as a column: ``ok   torch 2.13.0 (CPU build)``."""
        fix = f"  → {self.fix}" if self.fix else ""
        return f"{self.severity:<4} {self.code} {self.message}{fix}"

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)

    def status_json(self) -> dict[str, str | None]:
        """`lora-tui doctor --json`'s shape (``name`` for the code, no path)."""
        return {"name": self.code, "severity": self.severity, "message": self.message, "fix": self.fix}
