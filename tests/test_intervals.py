"""Means, deviations and Student-t intervals over seeds, against computations written here: the t quantile's
closed forms for 1, 2 and 4 degrees of freedom and published table values, and a paired interval computed
with the standard library from known samples."""

from __future__ import annotations

import math
import statistics

import pytest

from okspose.intervals import mean_sd, paired_interval, t_quantile

# Published quantiles t_{0.975, df} (e.g. R's qt(0.975, df)).
T975 = {1: 12.706204736174698, 2: 4.302652729911275, 3: 3.182446305284263, 4: 2.7764451051977987,
        9: 2.2621571627409915, 29: 2.0452296421327034}


def closed_form_t(p: float, df: int) -> float:
    """Student t quantiles with a closed form (df 1, 2 and 4)."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    alpha = 4 * p * (1 - p)  # df 4
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_the_tables(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T975[df], rel=1e-10)


@pytest.mark.parametrize("df", [1, 2, 4])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.025, 0.1])
def test_t_quantile_matches_the_closed_forms(p: float, df: int) -> None:
    assert t_quantile(p, df) == pytest.approx(closed_form_t(p, df), rel=1e-9, abs=1e-12)


def test_t_quantile_tends_to_the_normal_quantile() -> None:
    assert t_quantile(0.975, 10**5) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), rel=1e-4)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)


def test_paired_interval_of_known_samples() -> None:
    before = [42.1, 43.0, 41.5]
    after = [43.0, 43.1, 43.4]
    diffs = [a - b for a, b in zip(after, before)]  # 0.9, 0.1, 1.9
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = 4.302652729911275 * sd / math.sqrt(3)
    got = paired_interval(after, before)
    assert got.n == 3 and got.diffs == pytest.approx(diffs)
    assert got.mean == pytest.approx(mean) and got.low == pytest.approx(mean - half) and got.high == pytest.approx(
        mean + half)
    assert got.low < 0 < got.high and not got.resolved  # 0.97 +- 2.24: the sign is not known
    five = paired_interval([1.0, 1.2, 0.9, 1.1, 1.3], [0.0, 0.1, 0.2, 0.0, 0.1])
    d = [1.0, 1.1, 0.7, 1.1, 1.2]
    half = 2.7764451051977987 * statistics.stdev(d) / math.sqrt(5)
    assert (five.low, five.high) == pytest.approx((statistics.fmean(d) - half, statistics.fmean(d) + half))
    assert five.resolved
    assert paired_interval([1.0], [0.5]) is None  # one seed: no interval
    with pytest.raises(ValueError):
        paired_interval([1.0, 2.0], [1.0])


def test_mean_sd() -> None:
    assert mean_sd([1.0, 2.0, 4.0]) == pytest.approx((statistics.fmean([1, 2, 4]), statistics.stdev([1, 2, 4])))
    mean, sd = mean_sd([3.0])
    assert mean == 3.0 and math.isnan(sd)
