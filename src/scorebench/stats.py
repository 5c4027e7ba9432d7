"""Statistics shared by the conformance kit, compare and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def fit_order(steps: Sequence[float], values: Sequence[float]) -> tuple[float, float, float]:
    r"""Least-squares line through ``(log steps, log value)``: slope, its standard error and
    the intercept.  With ``n`` points, residuals ``r_i`` and ``S_xx = sum (x_i - xbar)^2``,
    ``SE = sqrt(sum r_i^2 / (n - 2) / S_xx)`` (NaN for two points).  The slope is the
    empirical convergence order: error ~ C * steps^slope."""
    x = np.log(np.asarray(steps, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    n = len(x)
    if n < 2 or np.ptp(x) == 0:
        raise ValueError("fit_order needs at least two distinct step counts")
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
