"""Pausing Python's cyclic garbage collector while a screen opens.

Opening the app and the dataset screen builds tens of thousands of long-lived objects (widgets,
their styles, 10,000 index rows). While they are being built the collector keeps traversing them,
a young collection every 700 allocations and now and then a full one (90-200 ms on the 2-core VM,
more than the whole rest of the open), and frees nothing: none of it is garbage yet. So each open
holds the collector off until its screen is interactive; the first collection after it traverses
what the open built once (about 20 ms for the 10,000-image dataset screen, after its first frame)
instead of dozens of times during the open. (Freezing what was built instead, ``gc.freeze``, skips
even that, but then the garbage of a closed screen is never collected unless the heap is thawed and
fully collected each time: measured, a process that opened the screen 30 times grew to 420 MB.)

Holds nest (the app's start and the dataset screen's open may overlap) and each one ends by itself
after ``max_s`` seconds, so a screen that is built but never shown cannot leave the collector off.
Reference counting frees everything that is not a cycle meanwhile, as always.
"""

from __future__ import annotations

import asyncio
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
        # The deadline runs on the event loop when there is one (a timer thread costs a thread start,
        # a GIL hand-off, on every open); a hold made outside a loop gets a thread.
        self._timer: asyncio.TimerHandle | threading.Timer
        try:
            self._timer = asyncio.get_running_loop().call_later(max_s, self.release)
        except RuntimeError:
            self._timer = threading.Timer(max_s, self.release)
            self._timer.daemon = True
            self._timer.start()

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """End this hold (from any thread; a second call does nothing)."""
        global _holds
        with _lock:
            if not self._held:
                return
            self._held = False
            _holds -= 1
            if _holds == 0 and _resume:
                gc.enable()
        if isinstance(self._timer, threading.Timer) and self._timer is not threading.current_thread():
            self._timer.cancel()  # (a loop's TimerHandle is left to fire: release is idempotent, and
            #                        cancelling it is not safe from a worker thread, where one release runs)


def holding() -> int:
    """How many holds are in force (for tests)."""
    return _holds
