"""Metrics, registered by name in :data:`METRICS`."""

from .base import (
    MAX_ABS_VALUE,
    METRIC_KINDS,
    METRICS,
    ExactMetric,
    Metric,
    MetricContractError,
    MetricInputError,
    MomentMetric,
    NonConvergenceWarning,
    SampleMetric,
    ScoreMetric,
    TrajectoryMetric,
)
from .context import MetricContext
from .exact_law import ExactKL, ExactW2
from .jacobian import ScoreJacobian, autograd_jacobian, score_jacobian
from .kernel import MMD, EnergyDistance
from .modes import ModeMetric, ModesMissed, ModeTV
from .moments import BuresW2, CovError, MeanError, empirical_moments
from .score import ScoreMSE, TrajectoryScoreMSE
from .transport import W2, SinkhornDivergence, SlicedW2

__all__ = [
    "MAX_ABS_VALUE",
    "METRICS",
    "METRIC_KINDS",
    "MMD",
    "W2",
    "BuresW2",
    "CovError",
    "EnergyDistance",
    "ExactKL",
    "ExactMetric",
    "ExactW2",
    "MeanError",
    "Metric",
    "MetricContext",
    "MetricContractError",
    "MetricInputError",
    "ModeMetric",
    "ModeTV",
    "ModesMissed",
    "MomentMetric",
    "NonConvergenceWarning",
    "SampleMetric",
    "ScoreJacobian",
    "ScoreMSE",
    "ScoreMetric",
    "SinkhornDivergence",
    "SlicedW2",
    "TrajectoryMetric",
    "TrajectoryScoreMSE",
    "autograd_jacobian",
    "empirical_moments",
    "score_jacobian",
]
