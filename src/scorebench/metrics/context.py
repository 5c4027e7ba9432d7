"""What a metric may read: one frozen context per cell x seed.

The runner builds a :class:`MetricContext` after a sampler has run and hands it to every metric
of the cell (:meth:`scorebench.metrics.Metric.evaluate` and :meth:`~scorebench.metrics.Metric.floor`);
a metric takes what it needs from it and declares what that is (see :mod:`scorebench.metrics.base`).
The runner never looks at what kind of metric it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess
    from ..samplers.base import Sampler
    from ..targets.base import Target


def _default_generator(device: torch.device) -> Callable[[], torch.Generator]:
    return lambda: torch.Generator(device).manual_seed(0)


@dataclass(frozen=True)
class MetricContext:
    """Everything a metric may read about one cell x seed.

    Parameters
    ----------
    x:
        The sampler's output, ``(n, d)``, in the run's dtype on the run's device.
    y1, y2:
        Two independent exact draws of the target, ``(n, d)`` float64 (``y1`` is the reference
        of the value, ``y1`` and ``y2`` make the noise floor).
    target, process:
        The cell's target and forward process.
    score:
        The fitted score model the sampler used.
    sampler:
        The sampler, as built for the cell.
    grid:
        The time grid the sampler ran on.
    states:
        ``(t, particles)`` recorded along the sampler's trajectory, at the steps and for the
        particles the cell's metrics asked for (:meth:`~scorebench.metrics.Metric.record_steps`);
        empty when none asked.
    start_law:
        The exact law of ``p_{T0}`` the chain started from (``init = "exact"``), as a target; ``None``
        when the chain started from the sampler's own initial law.
    generator:
        A factory of the metric's random generator: every call returns a fresh generator in the
        same state (derived from the suite seed, the metric, the target, ``n_samples`` and ``seed``),
        so the value, the floor and every bootstrap resample draw the same projections.
    n_samples:
        The cell's sample size.
    seed:
        The replicate seed.
    """

    x: Tensor
    y1: Tensor
    y2: Tensor
    target: Target
    process: ForwardProcess
    score: ScoreModel | None = None
    sampler: Sampler | None = None
    grid: Tensor | None = None
    states: tuple[tuple[float, Tensor], ...] = ()
    start_law: Target | None = None
    generator: Callable[[], torch.Generator] = field(default=None)  # type: ignore[assignment]
    n_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.generator is None:
            object.__setattr__(self, "generator", _default_generator(self.x.device))
        if not self.n_samples:
            object.__setattr__(self, "n_samples", int(self.x.shape[0]))
        object.__setattr__(self, "states", tuple(self.states))
