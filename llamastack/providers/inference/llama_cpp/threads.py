"""How many threads each llama.cpp step gets: the fastest measured count, re-checked now and then.

All threads on an idle machine decode fastest, but llama.cpp's worker threads spin at every barrier of
the graph: when another process takes a core, each barrier waits for a descheduled thread and one
step can slow by 100x. Timing the steps finds that out within a step or two and falls back to fewer
threads; the larger count is tried again after a growing pause, so an idle machine gets it back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

_ALPHA = 0.3  # weight of the newest step in the running average
_FIRST_PROBE_S = 2.0
_MAX_PROBE_S = 60.0
_COLLAPSE = 3.0  # a step this many times slower than another count's average switches at once
_PROBE_TOKENS = 8  # probes run on small steps only: a collapsed large step can take seconds


def _bucket(n_tokens: int) -> int:
    """Steps of similar size cost alike: 1, 2-3, 4-7, ... tokens."""
    return max(1, n_tokens).bit_length()


class ThreadTuner:
    """One thread count for every step (contention hits all step sizes alike), compared per size."""

    def __init__(self, fixed: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        cores = os.cpu_count() or 1
        self.fixed = fixed
        self.counts = [fixed] if fixed else sorted({cores, max(1, cores // 2), 1}, reverse=True)
        # Start safe: the fewest threads cannot collapse; the first small step tries more.
        self.best = self.counts[-1]
        self._clock = clock
        self._avg: dict[tuple[int, int], float] = {}
        self._probe_at = 0.0
        self._probe_gap = _FIRST_PROBE_S
        self._probing: int | None = None

    def choose(self, n_tokens: int) -> int:
        if len(self.counts) == 1 or n_tokens > _PROBE_TOKENS:
            return self.best
        now = self._clock()
        if now < self._probe_at:
            return self.best
        b = _bucket(n_tokens)
        others = [c for c in self.counts if c != self.best]
        unknown = [c for c in others if (c, b) not in self._avg]
        self._probing = unknown[0] if unknown else others[int(now) % len(others)]
        self._probe_at = now + self._probe_gap
        return self._probing

    def record(self, threads: int, n_tokens: int, seconds: float) -> None:
        if len(self.counts) == 1:
            return
        b = _bucket(n_tokens)
        key = (threads, b)
        old = self._avg.get(key)
        probe, self._probing = threads == self._probing, None
        if probe:
            # A probe that collapsed costs its whole step: under contention look again much later.
            rival = self._avg.get((self.best, b))
            grow = 4 if rival is not None and seconds > _COLLAPSE * rival else 2
            self._probe_gap = min(_MAX_PROBE_S, self._probe_gap * grow)
        # A probe's time stands alone: an average from before conditions changed would outvote it.
        self._avg[key] = seconds if old is None or probe else (1 - _ALPHA) * old + _ALPHA * seconds
        known = {c: self._avg[(c, b)] for c in self.counts if (c, b) in self._avg}
        best = min(known, key=known.__getitem__)
        if threads == self.best and not probe:
            rivals = {c: v for c, v in known.items() if c != threads}
            if rivals and seconds > _COLLAPSE * min(rivals.values()):
                best = min(rivals, key=rivals.__getitem__)
                self._avg[key] = max(self._avg[key], seconds)
            elif not rivals and old is not None and seconds > _COLLAPSE * old:
                best = self.counts[-1]  # far slower than usual, nothing to compare: the fewest threads
        if best != self.best and (len(known) > 1 or best == self.counts[-1]):
            self.best = best
            self._probe_gap = _FIRST_PROBE_S  # conditions changed: look again soon
            self._probe_at = self._clock() + self._probe_gap

    def describe(self) -> dict[str, float]:
        """Milliseconds per step by thread count and step size, for logs and benchmarks."""
        return {f"{c}t/{1 << (b - 1)}+tok": round(v * 1000, 2) for (c, b), v in sorted(self._avg.items())}
