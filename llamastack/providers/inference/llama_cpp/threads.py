"""How many threads each llama.cpp step gets: the fastest measured count, re-checked now and then.

All threads on an idle machine decode fastest, but llama.cpp's worker threads spin at every barrier of
the graph: when another process takes a core, each barrier waits for a descheduled thread and one
step can slow by 100x. Timing the steps finds that out within two steps and falls back to fewer
threads; the larger count is tried again after a growing pause, so an idle machine gets it back.

Only two things change the count: a probe (a small step run on another count) that beats the current
count's average for steps of its size, or a collapse (two steps in a row far slower than the other
count). Ordinary steps only update averages, so one slow step (a page fault, a burst of other work)
or a stale average from minutes ago does not make the count flip back and forth.

The first step on a count is not timed: llama.cpp starts that many threads for the calling thread
then, and the step took 14-19 ms (up to 100) instead of 10 here. Judged by it, the first probe of all
cores looked no faster than one thread, and a freshly started server decoded on one thread for its
first 4 s (its 16-token chats about 275 ms instead of 155).

The count starts at one thread (which cannot collapse) unless other processes have left the machine
idle since the server started (stack/machine.py): then the first request's prompt already runs on all
cores (a fresh server's first 16-token chat: 373-491 ms with it on one thread, 352-407 ms on two).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from llamastack.stack.machine import other_load_since_start

_ALPHA = 0.3  # weight of the newest step in the running average
_FIRST_PROBE_S = 2.0
_MAX_PROBE_S = 60.0
_COLLAPSE = 3.0  # steps this many times slower than another count's average are a collapse
_STRIKES = 2  # consecutive collapsed steps that switch the count (one can be a blip)
_WIN = 0.9  # a probe must be this much faster than the current count to replace it
_PROBE_TOKENS = 8  # probes run on small steps only: a collapsed large step can take seconds
_IDLE_CORES = 0.25  # other processes using less than this (on average) leave the machine idle


def _bucket(n_tokens: int) -> int:
    """Steps of similar size cost alike: 1, 2-3, 4-7, ... tokens."""
    return max(1, n_tokens).bit_length()


class ThreadTuner:
    """One thread count for every step (contention hits all step sizes alike), compared per size."""

    def __init__(
        self,
        fixed: int | None,
        clock: Callable[[], float] = time.monotonic,
        other_load: Callable[[], float | None] | None = None,
    ) -> None:
        cores = os.cpu_count() or 1
        self.fixed = fixed
        self.counts = [fixed] if fixed else sorted({cores, max(1, cores // 2), 1}, reverse=True)
        # Start safe: the fewest threads cannot collapse; the first small steps try more.
        self.best = self.counts[-1]
        self._other_load = other_load or other_load_since_start().cores
        self._started = False
        self._clock = clock
        self._avg: dict[tuple[int, int], float] = {}
        self._probe_at = 0.0
        self._probe_gap = _FIRST_PROBE_S
        self._probing: int | None = None
        self._strikes = 0
        self._warm: set[int] = set()  # counts that have run a step

    def choose(self, n_tokens: int) -> int:
        if not self._started:
            self._started = True
            load = self._other_load() if len(self.counts) > 1 else None
            if load is not None and load < _IDLE_CORES:
                self.best = self.counts[0]  # an idle machine: all cores from the first step
                self._probe_at = self._clock() + self._probe_gap  # and fewer are tried at the usual pace
        if len(self.counts) == 1 or n_tokens > _PROBE_TOKENS:
            return self.best
        b = _bucket(n_tokens)
        if (self.best, b) not in self._avg:
            return self.best  # a probe is judged against this count's time at the same size
        others = [c for c in self.counts if c != self.best]
        unknown = [c for c in others if (c, b) not in self._avg]
        now = self._clock()
        if unknown:  # first time at this size: compare now (at most a few small steps)
            self._probing = unknown[0]
        elif now >= self._probe_at:
            self._probing = others[int(now) % len(others)]
            self._probe_at = now + self._probe_gap
        else:
            return self.best
        return self._probing

    def record(self, threads: int, n_tokens: int, seconds: float) -> None:
        if len(self.counts) == 1:
            return
        if threads not in self._warm:  # its threads were started in this step: the next one is timed
            self._warm.add(threads)
            self._probing = None
            return
        b = _bucket(n_tokens)
        key = (threads, b)
        probe, self._probing = threads == self._probing, None
        if probe:
            current = self._avg.get((self.best, b))
            if current is not None and seconds < _WIN * current:
                self._switch(threads)
            elif current is not None and seconds > _COLLAPSE * current:
                # A probe that collapsed costs its whole step: under contention look again much later.
                self._probe_gap = min(_MAX_PROBE_S, self._probe_gap * 4)
            else:
                self._probe_gap = min(_MAX_PROBE_S, self._probe_gap * 2)
            self._avg[key] = seconds  # a probe's time stands alone: conditions may have changed since
            return
        old = self._avg.get(key)
        self._avg[key] = seconds if old is None else (1 - _ALPHA) * old + _ALPHA * seconds
        if threads != self.best:
            return
        rivals = {c: self._avg[(c, b)] for c in self.counts if c != threads and (c, b) in self._avg}
        if rivals:
            collapsed = seconds > _COLLAPSE * min(rivals.values())
        else:  # nothing to compare with: far slower than usual
            collapsed = old is not None and seconds > _COLLAPSE * old
        self._strikes = self._strikes + 1 if collapsed else 0
        if self._strikes >= _STRIKES:
            self._avg[key] = max(self._avg[key], seconds)  # keep this count from looking fast
            self._switch(min(rivals, key=rivals.__getitem__) if rivals else self.counts[-1])

    def _switch(self, threads: int) -> None:
        self._strikes = 0
        if threads != self.best:
            self.best = threads
            self._probe_gap = _FIRST_PROBE_S  # conditions changed: look again soon
            self._probe_at = self._clock() + self._probe_gap

    def describe(self) -> dict[str, float]:
        """Milliseconds per step by thread count and step size, for logs and benchmarks."""
        return {f"{c}t/{1 << (b - 1)}+tok": round(v * 1000, 2) for (c, b), v in sorted(self._avg.items())}
