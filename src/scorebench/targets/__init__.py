"""Target distributions, registered by name in :data:`TARGETS`."""

from .base import TARGETS, Target, exact_score_targets
from .gaussian import GMM, Gaussian, GaussianUnknownMean
from .mixture import GaussianMixture
from .sample_only import Circle, Funnel, StudentT

__all__ = [
    "GMM",
    "TARGETS",
    "Circle",
    "Funnel",
    "Gaussian",
    "GaussianMixture",
    "GaussianUnknownMean",
    "StudentT",
    "Target",
    "exact_score_targets",
]
