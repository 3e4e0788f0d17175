"""CPU time the machine's other processes used since a moment (Linux /proc; None elsewhere).

Imported when the server starts, so that a model loaded in its first seconds can tell whether the
machine has been idle since then: the window up to its first request (about a second) is long enough
to judge, while the window since the model was made (about 0.1 s) is not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

_MIN_WINDOW_S = 0.3  # shorter than this says nothing: /proc counts in ticks of 10 ms
_START_RECENT_S = 30.0  # the process start is a fair origin for this long


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy so far; None where /proc/stat is missing."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    ticks = [int(x) for x in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds used by the whole machine, by this process) so far; None where /proc is missing."""
    busy = machine_busy_s()
    if busy is None:
        return None
    own = os.times()
    return busy, own.user + own.system


class OtherLoad:
    """Cores used on average by other processes since this was made (None: unknown or too soon)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self._before = cpu_seconds()

    def cores(self) -> float | None:
        now, after = self._clock(), cpu_seconds()
        if self._before is None or after is None or now - self.started < _MIN_WINDOW_S:
            return None
        others = (after[0] - self._before[0]) - (after[1] - self._before[1])
        return max(0.0, others) / (now - self.started)


_AT_START = OtherLoad()


def other_load_since_start() -> OtherLoad:
    """Since the server started while that was recent; since now later on (a model loaded hours
    after the start must not judge the machine by those hours)."""
    if time.monotonic() - _AT_START.started < _START_RECENT_S:
        return _AT_START
    return OtherLoad()
