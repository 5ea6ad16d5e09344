"""Side-by-side timing shared by the benchmarks: paired rounds in alternating order."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def paired_times(first: Callable[[], object], second: Callable[[], object], rounds: int) -> tuple[list, list]:
    """Seconds per call for two functions, run back to back each round, their order alternating,
    so drift in the machine's load hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_index in range(rounds):
        order = [(first, times[0]), (second, times[1])]
        if round_index % 2:
            order.reverse()
        for fn, bucket in order:
            started = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - started)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-round ratios."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))
