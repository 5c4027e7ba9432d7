"""An example sampler plugin: what a researcher's package looks like.

``StochasticHeun`` is registered through the entry point ``scorebench.samplers`` in this
package's ``pyproject.toml``; once installed, suites name it ``example_heun_sde`` like any
built-in.  ``BrokenSampler`` makes the typical mistakes and is used to show what
``check_sampler`` reports.  ``RaisingSampler``, ``WrongShapeSampler`` and ``NaNSampler``
(entry points ``example_raises``, ``example_wrong_shape``, ``example_nan``) fail at run time,
to show that a suite records each failing cell and goes on.

``WrongScoreCoefficient``, ``DroppedScore``, ``WrongNoiseVariance`` and ``VPOnlyDrift`` are
Euler--Maruyama steps with one mistake each that leaves the step affine, deterministic and
well-shaped: they pass every consistency check and fail only ``check_sampler``'s
``convergence`` check, whose message says on which process and how.
"""

from __future__ import annotations

import math

import torch

from scorebench.samplers import Sampler


class StochasticHeun(Sampler):
    """Heun's predictor-corrector on the drift of the reverse SDE, one Gaussian increment per step."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        h = t - t_next

        def drift(y: torch.Tensor, s: float) -> torch.Tensor:
            return float(process.f(s)) * y - float(process.g2(s)) * score(y, s)

        d1 = drift(x, t)
        kick = math.sqrt(float(process.g2(t)) * h) * noise[:, 0]
        x_pred = x - h * d1 + kick
        return x - 0.5 * h * (d1 + drift(x_pred, t_next)) + kick


class BrokenSampler(Sampler):
    """Ignores its noise argument, draws from the global RNG and hides NaNs."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        h = t - t_next
        x = x - h * (float(process.f(t)) * x - float(process.g2(t)) * score(x, t))
        x = x + math.sqrt(float(process.g2(t)) * h) * torch.randn_like(x)  # not the given noise
        return torch.nan_to_num(x)  # hides a broken score


class RaisingSampler(StochasticHeun):
    """Raises in its third step."""

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        if t_next < 0.5 * process.T:
            raise RuntimeError("example plugin failure")
        return super().step(score, process, x, t, t_next, noise)


class WrongShapeSampler(StochasticHeun):
    """Returns one coordinate too few."""

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        return super().step(score, process, x, t, t_next, noise)[:, :-1]


class NaNSampler(StochasticHeun):
    """Turns every particle into NaN at the last step."""

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        x = super().step(score, process, x, t, t_next, noise)
        return x * float("nan") if t_next == process.t_min else x


def _em(process, x, t, t_next, noise, drift_x, score_term, noise_variance):  # type: ignore[no-untyped-def]
    h = t - t_next
    return x - h * (drift_x - score_term) + math.sqrt(noise_variance * h) * noise[:, 0]


class WrongScoreCoefficient(Sampler):
    """Euler--Maruyama with ``g^2 / 2`` in front of the score (the probability-flow coefficient)
    but the SDE's noise."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        g2 = float(process.g2(t))
        return _em(process, x, t, t_next, noise, float(process.f(t)) * x, 0.5 * g2 * score(x, t), g2)


class DroppedScore(Sampler):
    """Euler--Maruyama that evaluates the score and drops it (``+ 0 * score``)."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        g2 = float(process.g2(t))
        return _em(process, x, t, t_next, noise, float(process.f(t)) * x, 0 * score(x, t), g2)


class WrongNoiseVariance(Sampler):
    """Euler--Maruyama whose Brownian increment has variance ``2 g^2 h`` instead of ``g^2 h``."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        g2 = float(process.g2(t))
        return _em(process, x, t, t_next, noise, float(process.f(t)) * x, g2 * score(x, t), 2 * g2)


class VPOnlyDrift(Sampler):
    """Euler--Maruyama that writes the linear drift as ``-g^2 x / 2``: right for VP and OU
    (``f = -beta / 2``, ``g^2 = beta``), wrong for VE (``f = 0``) and sub-VP."""

    noise_per_step = 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        g2 = float(process.g2(t))
        return _em(process, x, t, t_next, noise, -0.5 * g2 * x, g2 * score(x, t), g2)
