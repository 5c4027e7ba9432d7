"""Score estimators, registered by name in :data:`ESTIMATORS`."""

from .base import ESTIMATORS, Estimator, ScoreModel
from .oracle import NoisyOracle, NoisyOracleScore, Oracle, OracleScore, exact_score

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "NoisyOracle",
    "NoisyOracleScore",
    "Oracle",
    "OracleScore",
    "ScoreModel",
    "exact_score",
]
