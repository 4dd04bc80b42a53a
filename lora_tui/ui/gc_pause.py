"""Pausing Python's cyclic garbage collector while a screen opens.

Opening the app and the dataset screen builds tens of thousands of long-lived objects (widgets,
their styles, 10,000 index rows). While they are being built the collector keeps traversing them,
a young collection every 700 allocations and now and then a full one (90-200 ms on the 2-core VM,
more than the whole rest of the open), and frees nothing: none of it is garbage yet. So each open
holds the collector off until its screen is interactive. When the last hold ends, what was built is
frozen (``gc.freeze``: moved out of the collector's sight, in constant time) before the collector
resumes: resuming without it would traverse all of it at once (60-170 ms right after the first
paint, when the first key arrives). :func:`thaw` hands it back to the collector when the screen
that built it goes away, so what it leaves behind can be collected.

Holds nest (the app's start and the dataset screen's open may overlap) and each one ends by itself
after ``max_s`` seconds, so a screen that is built but never shown cannot leave the collector off.
Reference counting frees everything that is not a cycle meanwhile, as always.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holds = 0
_resume = False  # whether the collector was on when the first hold began (a test may turn it off)


class Hold:
    """One pause of the collector, ended by :meth:`release` (idempotent) or after ``max_s`` seconds."""

    def __init__(self, max_s: float = 3.0) -> None:
        global _holds, _resume
        with _lock:
            if _holds == 0:
                _resume = gc.isenabled()
                gc.disable()
            _holds += 1
        self._held = True
        self._timer = threading.Timer(max_s, self.release)
        self._timer.daemon = True
        self._timer.start()

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        global _holds
        with _lock:
            if not self._held:
                return
            self._held = False
            _holds -= 1
            if _holds == 0 and _resume:
                gc.freeze()
                gc.enable()
        if threading.current_thread() is not self._timer:
            self._timer.cancel()


def thaw() -> None:
    """A screen (or the app) that froze what it built is going away: let the collector see it again."""
    gc.unfreeze()


def holding() -> int:
    """How many holds are in force (for tests)."""
    return _holds
