"""Round-robin timing for perf scripts whose ratios must survive a loaded machine.

:func:`_perf_common.time_call` times one variant after another; when the load changes between
them (other jobs on a shared 2-core machine), a ratio of two medians compares two different
machines. Here every variant gets one :class:`Sampler` (warm-up, then a unit count ``n`` chosen so a
sample lasts ≥ ``min_time``) and :func:`sample_round_robin` takes one sample of each variant per
round, so a load change hits all of them alike. Each sample records wall and process CPU seconds
per unit and, from ``getrusage``, minor page faults and involuntary context switches per unit:
``cpu ≪ wall`` with involuntary switches > 0 and no page faults says the variant waited for a
core (load), not for memory. After a two-thread BLAS sample the sampler waits until the process
stops using CPU (:func:`wait_until_cpu_quiet`): OpenBLAS's worker keeps spinning on the other core
for ~0.1 s after a call and would slow whatever is timed next.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import numpy as np

__all__ = ["Sampler", "sample_round_robin", "wait_until_cpu_quiet", "MIN_ROUNDS"]

MIN_ROUNDS = 5


def wait_until_cpu_quiet(max_wait_s: float = 1.0) -> float:
    """Sleep in 20 ms steps until the process uses < 2 ms CPU per step (BLAS workers asleep);
    returns the seconds waited (capped at ``max_wait_s``)."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        cpu = time.process_time()
        time.sleep(0.02)
        if time.process_time() - cpu < 0.002:
            break
    return time.perf_counter() - start


class Sampler:
    """Samples of one variant. ``run(n)`` does n units of work (iterations, calls) and returns the
    seconds to count (e.g. a solver's kernel time) or None for the wall time of the call."""

    def __init__(self, run: Callable[[int], float | None], min_time: float, *,
                 blas_two_threads: bool = False, max_units: int = 10**7) -> None:
        self.run = run
        self.blas_two_threads = blas_two_threads
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.faults: list[float] = []
        self.switches: list[float] = []
        self.spin: list[float] = []
        self._measure(1)  # warm-up: compile / load from cache, thread and BLAS start-up
        n = 1
        while True:
            wall = self._measure(n)[0]
            if wall * n >= min_time or n >= max_units:
                break
            n = int(min(max(n * 2, n * min_time / max(wall * n, 1e-7) * 1.2), max_units))
        self.n = n

    def _measure(self, n: int) -> tuple[float, float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = time.process_time()
        start = time.perf_counter()
        seconds = self.run(n)
        wall = time.perf_counter() - start if seconds is None else seconds
        cpu = time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_SELF)
        if self.blas_two_threads:
            self.spin.append(wait_until_cpu_quiet())
        return (wall / n, cpu / n, (after.ru_minflt - usage.ru_minflt) / n,
                (after.ru_nivcsw - usage.ru_nivcsw) / n)

    def sample(self) -> None:
        wall, cpu, faults, switches = self._measure(self.n)
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.faults.append(faults)
        self.switches.append(switches)

    def reset(self) -> None:
        self.walls, self.cpus, self.faults, self.switches = [], [], [], []

    @property
    def wall(self) -> float:
        """Median wall seconds per unit."""
        return float(np.median(self.walls))

    @property
    def fastest(self) -> float:
        return float(np.min(self.walls))

    @property
    def cpu(self) -> float:
        """Median process CPU seconds per unit (all threads)."""
        return float(np.median(self.cpus))

    @property
    def spread(self) -> float:
        return float(np.max(self.walls) / np.min(self.walls))

    @property
    def minor_faults(self) -> float:
        return float(np.median(self.faults))

    @property
    def involuntary_switches(self) -> float:
        return float(np.median(self.switches))

    @property
    def blas_spin_s(self) -> float:
        return float(np.median(self.spin)) if self.spin else float("nan")


def sample_round_robin(samplers: dict[str, Sampler], rounds: int) -> None:
    """``rounds`` ≥ 5 rounds, each one sample of every sampler in order."""
    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds must be ≥ {MIN_ROUNDS} (medians over at least 5), got {rounds}")
    for _ in range(rounds):
        for sampler in samplers.values():
            sampler.sample()
