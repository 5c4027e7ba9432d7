"""scorebench: a benchmark suite for diffusion-model samplers and score estimators.

Components are reached by name through registries::

    import scorebench as sb
    target = sb.get_target("gmm", preset="ring8")
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(target, process)
    result = sb.get_sampler("euler_maruyama").sample(score, process, 1000, 100, generator)

``list_targets()``, ``list_processes()``, ``list_samplers()``, ``list_estimators()`` and
``list_metrics()`` give
the registered names; outside packages add their own through the entry-point groups
``scorebench.targets``, ``scorebench.processes``, ``scorebench.estimators`` and
``scorebench.samplers``.
"""

from __future__ import annotations

from typing import Any

from .device import make_generator, resolve_device
from .estimators import ESTIMATORS, Estimator, ScoreModel
from .exact import GaussianLaw, exact_output_law, gaussian_kl, gaussian_w2
from .metrics import METRICS, Metric
from .processes import PROCESSES, ForwardProcess, time_grid
from .samplers import SAMPLERS, Sampler, SampleResult
from .targets import TARGETS, Target

__version__ = "0.1.0"


def get_target(name: str, /, **params: Any) -> Target:
    """Build the target registered as ``name`` (e.g. ``"gaussian"``, ``"gmm"``)."""
    return TARGETS.build(name, **params)


def get_process(name: str, /, **params: Any) -> ForwardProcess:
    """Build the forward process registered as ``name`` (``"vp"``, ``"ou"``, ``"ve"``, ``"subvp"``)."""
    return PROCESSES.build(name, **params)


def get_estimator(name: str, /, **params: Any) -> Estimator:
    """Build the score estimator registered as ``name`` (e.g. ``"oracle"``)."""
    return ESTIMATORS.build(name, **params)


def get_sampler(name: str, /, **params: Any) -> Sampler:
    """Build the sampler registered as ``name`` (e.g. ``"euler_maruyama"``)."""
    return SAMPLERS.build(name, **params)


def get_metric(name: str, /, **params: Any) -> Metric:
    """Build the metric registered as ``name`` (e.g. ``"sliced_w2"``)."""
    return METRICS.build(name, **params)


def list_metrics() -> list[str]:
    return METRICS.names()


def list_targets() -> list[str]:
    return TARGETS.names()


def list_processes() -> list[str]:
    return PROCESSES.names()


def list_estimators() -> list[str]:
    return ESTIMATORS.names()


def list_samplers() -> list[str]:
    return SAMPLERS.names()


__all__ = [
    "ESTIMATORS",
    "METRICS",
    "PROCESSES",
    "SAMPLERS",
    "TARGETS",
    "Estimator",
    "ForwardProcess",
    "GaussianLaw",
    "Metric",
    "SampleResult",
    "Sampler",
    "ScoreModel",
    "Target",
    "__version__",
    "exact_output_law",
    "gaussian_kl",
    "gaussian_w2",
    "get_estimator",
    "get_metric",
    "get_process",
    "get_sampler",
    "get_target",
    "list_estimators",
    "list_metrics",
    "list_processes",
    "list_samplers",
    "list_targets",
    "make_generator",
    "resolve_device",
    "time_grid",
]
