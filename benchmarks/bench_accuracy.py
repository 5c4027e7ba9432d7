"""Accuracy beside time: errors of fixed, seeded cells against exact truths, as ``track_*``.

asv treats every tracked number as lower-is-better (an increase is flagged as a regression),
so each value here is an error.  They are deterministic for a given device, so any change in
the history is a change in the numerics, not noise.
"""

from __future__ import annotations

from ._common import (
    DEVICES,
    EXACT_SAMPLERS,
    LEARNED,
    SAMPLED_ACCURACY,
    exact_w2_error,
    noise_score_error,
    require,
    sampled_bures_error,
    sampled_w2_gmm,
)


class ExactLawError:
    """Exact W2 (Bures formula, no Monte Carlo) from the output law of each affine sampler to a
    4-dimensional Gaussian target: 50 uniform steps from the prior, oracle score."""

    params = (list(EXACT_SAMPLERS),)
    param_names = ("sampler",)
    version = "1"

    def track_exact_w2(self, sampler: str) -> float:
        return exact_w2_error(sampler)

    track_exact_w2.unit = "W2"  # type: ignore[attr-defined]


class SampledError:
    """Errors of seeded sampling runs against exact truths (``_common.sampled_bures_error``,
    ``_common.sampled_w2_gmm``)."""

    params = (DEVICES, list(SAMPLED_ACCURACY))
    param_names = ("device", "sampler")
    version = "1"

    def setup(self, device: str, sampler: str) -> None:
        require(device)

    def track_bures_w2(self, device: str, sampler: str) -> float:
        """Bures W2 of the samples' moments to the exact moments of a 4-d Gaussian target."""
        return sampled_bures_error(device, sampler)

    track_bures_w2.unit = "W2"  # type: ignore[attr-defined]


class MixtureW2:
    """Empirical W2 between 1000 exponential-integrator samples of the ring8 mixture and 1000
    exact target draws (exact optimal transport)."""

    params = (DEVICES,)
    param_names = ("device",)
    version = "1"

    def setup(self, device: str) -> None:
        require(device)

    def track_w2(self, device: str) -> float:
        return sampled_w2_gmm(device)

    track_w2.unit = "W2"  # type: ignore[attr-defined]


class ScoreError:
    """Score error of each learned estimator (its declared test budget, 2-d Gaussian mixture) against
    the exact score, in noise-prediction units, averaged over five log-spaced times."""

    params = (DEVICES, LEARNED)
    param_names = ("device", "estimator")
    version = "2"
    timeout = 600

    def setup(self, device: str, estimator: str) -> None:
        require(device)

    def track_score_error(self, device: str, estimator: str) -> float:
        return noise_score_error(device, estimator)

    track_score_error.unit = "sigma^2-weighted MSE"  # type: ignore[attr-defined]
