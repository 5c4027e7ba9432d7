"""Score timings: batched evaluation of the oracle Gaussian-mixture score and of every learned
estimator's fitted model, and each estimator's fit within its declared test budget (the
``test_params`` its conformance tests and ``--quick`` use)."""

from __future__ import annotations

from ._common import (
    DEVICES,
    DIMS,
    ESTIMATORS,
    LEARNED,
    PARTICLES,
    estimator_fit,
    is_slow,
    require,
    score_eval,
    sync_timer,
)


class ScoreEval:
    """``model(x, t)`` on ``n`` exact draws of ``p_t`` (t = 0.5) of a 5-mode Gaussian mixture in
    ``dim`` dimensions.  Learned models are fitted once per process at their declared test
    parameters with ``_common.ESTIMATORS`` on top (the fit is not timed here)."""

    params = (DEVICES, list(ESTIMATORS), DIMS, PARTICLES)
    param_names = ("device", "estimator", "dim", "n")
    timer = staticmethod(sync_timer)
    version = "2"

    def setup(self, device: str, estimator: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n))
        self.run = score_eval(device, estimator, dim, n)

    def time_score(self, device: str, estimator: str, dim: int, n: int) -> None:
        self.run()


class EstimatorFit:
    """One ``fit`` of each learned estimator on the Gaussian mixture, within its declared test budget
    (iterations, training-set size, width) with ``_common.ESTIMATORS`` on top, seeded."""

    params = (DEVICES, LEARNED, DIMS)
    param_names = ("device", "estimator", "dim")
    timer = staticmethod(sync_timer)
    version = "2"
    warmup_time = 0.0
    timeout = 600

    def setup(self, device: str, estimator: str, dim: int) -> None:
        require(device, slow=is_slow(dim, defaults=(DIMS[0],)))
        self.run = estimator_fit(device, estimator, dim)

    def time_fit(self, device: str, estimator: str, dim: int) -> None:
        self.run()
