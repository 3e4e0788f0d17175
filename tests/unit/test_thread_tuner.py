"""The llama.cpp provider's thread count: all cores while fastest, fewer under contention, back again."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from llamastack.providers.inference.llama_cpp.threads import ThreadTuner
from llamastack.stack.machine import OtherLoad


class _Machine:
    """Step times per thread count, and a clock the steps advance."""

    def __init__(self, tuner_counts: tuple[int, int] = (2, 1)) -> None:
        self.now = 0.0
        self.cost = {2: 0.007, 1: 0.011}
        self.tuner = ThreadTuner(None, clock=lambda: self.now, other_load=lambda: None)
        self.tuner.counts = list(tuner_counts)
        self.tuner.best = tuner_counts[-1]
        self.used: list[int] = []

        # What the first step on more than one thread costs on top: llama.cpp starts its threads for
        # the caller then (one thread is the caller itself).
        self.cold = 0.0
        self._ran: set[int] = set()

    def run(self, steps: int, n_tokens: int = 4) -> None:
        for _ in range(steps):
            threads = self.tuner.choose(n_tokens)
            took = self.cost[threads] + (self.cold if threads > 1 and threads not in self._ran else 0.0)
            self._ran.add(threads)
            self.tuner.record(threads, n_tokens, took)
            self.now += took
            self.used.append(threads)


def test_idle_machine_settles_on_all_threads() -> None:
    m = _Machine()
    m.run(300)
    assert m.tuner.best == 2
    assert m.used[-100:].count(2) >= 99


def test_a_count_s_first_step_does_not_judge_it() -> None:
    """The first step on more threads starts them (18 ms here instead of 10, up to 100): all cores
    are taken after it all the same, not after a pause of seconds on one thread."""
    for cold in (0.0115, 0.1):
        m = _Machine()
        m.cold = cold
        m.run(8)
        assert m.tuner.best == 2
        assert m.used[-4:] == [2, 2, 2, 2]


def test_contention_falls_back_at_once_and_probes_rarely() -> None:
    m = _Machine()
    m.run(300)
    m.cost = {2: 0.8, 1: 0.03}  # two spinning threads collapse when a process competes
    m.run(2)
    assert m.tuner.best == 1
    m.used.clear()
    m.run(3000)  # about 90 s of decoding
    assert m.used.count(2) <= 12  # a probe now and then (the pause between them grows to 60 s)


def test_the_idle_machine_gets_all_threads_back() -> None:
    m = _Machine()
    m.run(100)
    m.cost = {2: 0.8, 1: 0.03}
    m.run(500)
    m.cost = {2: 0.007, 1: 0.011}
    m.run(12000)  # 60 s and more: the next probe finds two threads fast again
    assert m.tuner.best == 2


def test_large_steps_never_probe_and_a_fixed_count_is_kept() -> None:
    m = _Machine()
    m.run(50, n_tokens=512)
    assert set(m.used) == {1}  # probes run on small steps only; the safe count until then
    fixed = ThreadTuner(3)
    assert fixed.choose(1) == 3 and fixed.choose(512) == 3


def test_one_slow_step_does_not_switch_and_leaves_no_stale_average_behind() -> None:
    """A page fault or a burst of other work slows one step; the count stays, and later steps of every
    size keep running on all threads (a stale slow average must not flip it back and forth)."""
    m = _Machine()
    sizes = [1, 2, 4, 8] * 50
    for n in sizes:
        m.run(1, n_tokens=n)
    assert m.tuner.best == 2
    m.tuner.record(2, 1, 0.060)  # one step at 1 token takes 8x its usual time
    assert m.tuner.best == 2
    m.used.clear()
    for n in sizes * 4:
        m.run(1, n_tokens=n)
    assert m.tuner.best == 2
    assert m.used.count(1) <= 8  # probes only


def test_a_probe_needs_a_clear_win_to_replace_the_count() -> None:
    m = _Machine()
    m.run(300)
    m.cost = {2: 0.007, 1: 0.0068}  # within noise of each other: keep what runs
    m.run(6000)
    assert m.tuner.best == 2
    m.cost = {2: 0.012, 1: 0.007}  # a competitor takes some of a core: fewer threads are clearly faster
    m.run(20000)
    assert m.tuner.best == 1


def test_an_idle_machine_gets_all_cores_from_the_first_step() -> None:
    """Before any step is timed, the load of other processes since the tuner was made decides: the
    first request's prompt (a large step, never probed) runs on all cores when nothing else ran."""
    for load, first in ((0.0, "all"), (0.1, "all"), (0.8, "one"), (None, "one")):
        tuner = ThreadTuner(None, other_load=lambda load=load: load)
        expected = tuner.counts[0] if first == "all" else tuner.counts[-1]
        assert tuner.choose(300) == expected, load
    asked: list[bool] = []

    def idle() -> float:
        asked.append(True)
        return 0.0

    fixed = ThreadTuner(3, other_load=idle)
    assert fixed.choose(300) == 3 and not asked  # a fixed count is never second-guessed


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_other_load_sees_a_busy_process() -> None:
    quiet = OtherLoad()
    time.sleep(0.5)
    assert quiet.cores() is not None
    busy = OtherLoad()
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 0.8: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    load = busy.cores()
    assert load is not None and load > 0.5, load  # the child's spinning second is someone else's CPU
    assert OtherLoad().cores() is None  # too soon to say
