"""Statistics shared by the runner, compare, the conformance kit and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_half_width(values: Sequence[float] | np.ndarray, level: float = 0.95) -> float:
    r"""Half-width of the Student-t interval of the mean of ``values`` at ``level``:
    ``t_{(1 + level)/2, k - 1} s / sqrt(k)`` with ``s`` the sample standard deviation of the ``k``
    values (NaN for fewer than two)."""
    v = np.asarray(values, dtype=float)
    k = len(v)
    if k < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, k - 1)) * float(np.std(v, ddof=1)) / math.sqrt(k)


def welch_half_width(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95) -> float:
    r"""Half-width of Welch's interval for ``mean(b) - mean(a)``: ``t_{(1 + level)/2, nu} se`` with
    ``se^2 = s_a^2/n_a + s_b^2/n_b`` and the Welch--Satterthwaite degrees of freedom ``nu``
    (0 when both samples are constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    se2 = va + vb
    if se2 == 0:
        return 0.0
    dof = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(se2)


def normal_quantile(p: float) -> float:
    """The standard normal quantile ``Phi^{-1}(p)``."""
    return float(stats.norm.ppf(p))


def fit_line(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    r"""Least-squares line ``y ~ intercept + slope * x``: slope, its standard error and the intercept.
    With ``n`` points, residuals ``r_i`` and ``S_xx = sum (x_i - xbar)^2``,
    ``SE = sqrt(sum r_i^2 / (n - 2) / S_xx)`` (NaN for two points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if n < 2 or np.ptp(x) == 0:
        raise ValueError("a line needs at least two distinct x values")
    xbar = x.mean()
    sxx = float(((x - xbar) ** 2).sum())
    slope = float(((x - xbar) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * xbar)
    if n > 2:
        resid = y - (intercept + slope * x)
        se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
    else:
        se = math.nan
    return slope, se, intercept


def t_quantile(level: float, dof: float) -> float:
    """The Student-t quantile ``t_{(1 + level)/2, dof}`` of a two-sided ``level`` interval."""
    return float(stats.t.ppf(0.5 + level / 2, dof))


def fit_order(steps: Sequence[float], values: Sequence[float]) -> tuple[float, float, float]:
    r"""Least-squares line through ``(log steps, log value)`` (:func:`fit_line`): slope, its standard
    error and the intercept.  The slope is the empirical convergence order: error ~ C * steps^slope."""
    try:
        return fit_line(np.log(np.asarray(steps, dtype=float)), np.log(np.asarray(values, dtype=float)))
    except ValueError:
        raise ValueError("fit_order needs at least two distinct step counts") from None
