"""Score estimators, registered by name in :data:`ESTIMATORS`."""

from . import convex, lipschitz, memorising, mlp_dsm, ntk  # noqa: F401  (register the estimators)
from .base import ESTIMATORS, Estimator, ScoreModel
from .oracle import NoisyOracle, NoisyOracleScore, Oracle, OracleScore, exact_score
from .training import Budget, FitDiverged, LearnedEstimator, LearnedScore, TrainingRecord

__all__ = [
    "ESTIMATORS",
    "Budget",
    "Estimator",
    "FitDiverged",
    "LearnedEstimator",
    "LearnedScore",
    "NoisyOracle",
    "NoisyOracleScore",
    "Oracle",
    "OracleScore",
    "ScoreModel",
    "TrainingRecord",
    "exact_score",
]
