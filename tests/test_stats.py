"""The shared intervals (``scorebench.stats``) against independent truths: scipy's own
confidence intervals of the one-sample and Welch t-tests, a textbook quantile, and the coverage
of the interval over many normal samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from scorebench.stats import normal_quantile, t_half_width, welch_half_width


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_t_half_width_is_scipy_one_sample_interval(k: int, level: float) -> None:
    v = np.random.default_rng(k).normal(3.0, 2.0, k)
    ci = sps.ttest_1samp(v, 0.0).confidence_interval(confidence_level=level)
    assert t_half_width(v, level) == pytest.approx((ci.high - ci.low) / 2, rel=1e-12)


def test_t_half_width_of_two_values_uses_t_975_with_one_dof() -> None:
    # t_{0.975, 1} = 12.7062 (tables); values 0, 2: s = sqrt(2), half = 12.7062 * sqrt(2) / sqrt(2)
    assert t_half_width([0.0, 2.0]) == pytest.approx(12.7062, abs=1e-4)
    assert math.isnan(t_half_width([1.0]))


def test_the_t_interval_covers_the_mean_at_its_level_and_a_wrong_one_does_not() -> None:
    """Over 4000 samples of 4 normal values the 95% interval covers the true mean about 95% of the
    time; the normal-quantile interval (a common mistake at few seeds) covers visibly less."""
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 1.0, (4000, 4))
    means = samples.mean(1)
    t_cover = np.mean([abs(m - 1.0) <= t_half_width(s) for m, s in zip(means, samples, strict=True)])
    z_cover = np.mean([abs(m - 1.0) <= 1.96 * np.std(s, ddof=1) / 2 for m, s in zip(means, samples, strict=True)])
    assert abs(t_cover - 0.95) < 0.015
    assert z_cover < 0.90


def test_welch_half_width_is_scipy_welch_interval() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 1.0, 5), rng.normal(0.5, 3.0, 8)
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(confidence_level=0.99)
    assert welch_half_width(a, b, 0.99) == pytest.approx((ci.high - ci.low) / 2, rel=1e-10)
    assert welch_half_width([1.0, 1.0], [2.0, 2.0]) == 0.0


def test_normal_quantile() -> None:
    assert normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
