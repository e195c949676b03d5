"""Means, standard deviations and Student-t intervals over a few seeds, for tables whose gains are measured
more than once (``okspose reproduce --seeds N``).

A gain is the mean of paired differences (the same seed with and without a step), and its interval is
mean +- t_{(1+level)/2, n-1} * sd / sqrt(n). The t quantile is computed here (scipy is not a dependency):
the t distribution's tail is a regularized incomplete beta function, evaluated by its continued fraction
(Lentz's method), and inverted by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

_TINY = 1e-300  # keeps Lentz's method from dividing by zero


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (converges for x < (a + 1) / (a + b + 2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def beta_inc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, t >= 0."""
    return 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (t_{0.975, 2} = 4.3027)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_tail(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    while True:  # bisection down to adjacent floats
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            return mid
        lo, hi = (mid, hi) if t_tail(mid, df) > tail else (lo, mid)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation is NaN for a single value."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class Interval:
    """The mean of paired differences and its two-sided Student-t interval."""

    diffs: tuple[float, ...]
    mean: float
    low: float
    high: float
    level: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def resolved(self) -> bool:
        """Whether the interval leaves out 0, so the difference's sign is known at this level."""
        return self.low > 0.0 or self.high < 0.0


def paired_interval(after: Sequence[float], before: Sequence[float], level: float = 0.95) -> Interval | None:
    """The mean of ``after[i] - before[i]`` (pairs of the same seed) with its ``level`` interval; None for a
    single pair, which gives no interval."""
    if len(after) != len(before):
        raise ValueError(f"paired values of different lengths: {len(after)} and {len(before)}")
    diffs = tuple(a - b for a, b in zip(after, before))
    if len(diffs) < 2:
        return None
    mean, sd = mean_sd(diffs)
    half = t_quantile(0.5 + level / 2.0, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return Interval(diffs, mean, mean - half, mean + half, level)
