"""Score models and the estimator contract.

An :class:`Estimator` is configured by its constructor (like a scikit-learn estimator) and
turned into a :class:`ScoreModel` by ``fit(data, process, generator)``.  A score model maps a
batch ``x`` of shape ``(n, d)`` and a time ``t`` (a float shared by the batch, or one time per
row) to an estimate of ``grad log p_t(x)``, and counts its evaluations so that samplers can
report their number of function evaluations (NFE).
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Parameterised
from ..registry import Registry
from ..targets.base import Target, check_points
from ..validation import is_int_at_least

if TYPE_CHECKING:
    from ..processes import ForwardProcess, Time

ESTIMATORS: Registry[Estimator] = Registry("estimator", "scorebench.estimators")


class ScoreModel(ABC):
    """A batched, device-aware estimate ``(x, t) -> grad log p_t(x)`` that counts its calls.

    ``calls`` counts batched evaluations, ``evaluations`` counts rows (particles).
    """

    #: run the model's kernel through ``torch.compile`` where it has one (set by
    #: ``Sampler.sample(..., compile=True)``; a model without a compiled kernel ignores it)
    compile: bool = False

    def __init__(self, dim: int, process: ForwardProcess) -> None:
        self.dim = dim
        self.process = process
        self.calls = 0
        self.evaluations = 0

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        self._check_and_count(x, t)
        return self.score(x, t)

    def combine(self, x: Tensor, t: Time, x_weight: float, score_weight: float) -> Tensor:
        """``x_weight * x + score_weight * score(x, t)``, checked and counted as one score call: the
        affine step of Euler--Maruyama, the exponential integrator, DDPM and probability-flow Euler.

        The result is a new tensor the caller may modify in place; it may be laid out
        differently from ``x`` (a transposed view).  A model may compute it without forming the
        score (:meth:`score_combination`, e.g. the exact mixture score); the result then equals
        the two-step form up to float rounding of the combination.  An override of
        :meth:`score_combination` is used only by the class that defines it and by subclasses
        that keep its :meth:`score`: a subclass that changes :meth:`score`, or an instance whose
        ``score`` was replaced, gets the two-step form.
        """
        self._check_and_count(x, t)
        if _combination_follows_score(type(self)) and "score" not in self.__dict__:  # not replaced on the instance
            return self.score_combination(x, t, x_weight, score_weight)
        return ScoreModel.score_combination(self, x, t, x_weight, score_weight)

    def score_combination(self, x: Tensor, t: Time, x_weight: float, score_weight: float) -> Tensor:
        """:meth:`combine` without the checks and the counting (inputs already checked); by default
        ``x * x_weight + score(x, t) * score_weight``."""
        return (x * x_weight).add_(self.score(x, t), alpha=score_weight)

    def _check_and_count(self, x: Tensor, t: Time) -> None:
        check_points(x, self.dim)
        if is_scalar_time(t):  # the samplers' case: no tensors built
            self.process.check_scalar_time(t)
        else:
            t_tensor = torch.as_tensor(t, dtype=torch.float64)
            if t_tensor.ndim > 1 or (t_tensor.ndim == 1 and t_tensor.shape[0] != x.shape[0]):
                raise ValueError(
                    f"t must be a scalar or have shape ({x.shape[0]},) to match x, got {tuple(t_tensor.shape)}"
                )
            self.process.check_time(t_tensor.detach().cpu())
        self.calls += 1
        self.evaluations += x.shape[0]

    @abstractmethod
    def score(self, x: Tensor, t: Time) -> Tensor:
        """The estimate, shape ``(n, d)``, dtype and device of ``x`` (inputs already checked)."""

    def reset_counts(self) -> None:
        self.calls = 0
        self.evaluations = 0


def is_scalar_time(t: Time) -> bool:
    """Whether ``t`` is one Python number (a time shared by the batch), not a tensor or sequence."""
    return isinstance(t, float | int) and not isinstance(t, bool)


@functools.cache
def _combination_follows_score(cls: type[ScoreModel]) -> bool:
    """Whether ``cls``'s :meth:`~ScoreModel.score_combination` was written for its
    :meth:`~ScoreModel.score`: defined in the class that defines ``score`` or in a subclass of it."""

    def owner(name: str) -> type:
        return next(k for k in cls.__mro__ if name in k.__dict__)

    return issubclass(owner("score_combination"), owner("score"))


class Estimator(Parameterised, ABC):
    """Builds a :class:`ScoreModel` from data.

    ``data`` is either a :class:`~scorebench.targets.Target` (estimators that need the exact
    law, such as ``oracle``, require this; learned ones draw their training set from it) or
    a tensor of training samples of shape ``(n, d)``.

    An estimator that trains subclasses :class:`~.training.LearnedEstimator` and implements its
    ``_fit`` hook (the shared ``fit`` takes care of the generator, the clock and the training
    record); one that does not train, such as ``oracle``, implements ``fit`` itself.
    """

    registered_name: ClassVar[str] = ""
    #: the fitted model is affine in x whenever the target is Gaussian (exact laws apply)
    preserves_affinity: ClassVar[bool] = False
    #: ``fit`` needs the target itself, with closed-form marginals (its exact scores), not samples;
    #: suite validation refuses the estimator on other targets (plugins declare it the same way)
    needs_exact_target: ClassVar[bool] = False
    #: ``fit`` learns from data, so its cost is worth sharing: a distributed run keeps the cells that
    #: share a fit in one task (:meth:`scorebench.plan.Plan.tasks`); a closed-form estimator says False
    learns: ClassVar[bool] = True
    #: the parameters that set the training budget (iterations, training-set size, ...): ``--quick``
    #: caps each at its value in :attr:`test_params` (see :meth:`quick_params`); empty: nothing to cut
    budget_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def quick_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The constructor ``params`` of the ``--quick`` version of this estimator: each of its
        :attr:`budget_params` capped at its test value (:meth:`test_params_for` ``params``, so the
        sizes the conformance tests and the benchmarks run at), as :func:`cut_budget` describes."""
        small = cls.test_params_for(params)
        return cut_budget(cls, params, {key: small[key] for key in cls.budget_params if key in small})

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

    @abstractmethod
    def fit(
        self,
        data: Target | Tensor,
        process: ForwardProcess,
        generator: torch.Generator | None = None,
    ) -> ScoreModel:
        """Return a fitted score model."""


def cut_budget(cls: type, params: dict[str, Any], caps: dict[str, int]) -> dict[str, Any]:
    """``params`` with each integer parameter named in ``caps`` lowered to its cap.

    A parameter's value is the one given in ``params``, else the one ``cls(**params).describe()``
    reports (the default the estimator applies, which may depend on other parameters), else the
    constructor's default.  A value at or below its cap (an explicitly smaller budget) stays, as
    does one that is not a positive integer.  A parameter left at its default is added only where
    it is cut, so that an estimator with nothing to cut keeps its parameters, and its cells their
    ids.  Caps apply one at a time, in order, and a cut is kept only where ``cls`` still accepts
    the parameters (a minibatch larger than a cut training set, say, keeps that training set);
    parameters ``cls`` refuses are returned unchanged.
    """
    try:
        described = cls(**params).describe()
    except (ValueError, TypeError):
        return dict(params)
    try:
        signature = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        signature = {}
    out = dict(params)
    for key, cap in caps.items():
        if key in out:
            now = out[key]
        elif key in described:
            now = described[key]
        else:
            now = getattr(signature.get(key), "default", None)
        if not is_int_at_least(now, 1) or now <= cap:
            continue
        trial = {**out, key: cap}
        try:
            cls(**trial)
        except (ValueError, TypeError):
            continue
        out = trial
    return out


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """The generator given to ``fit``, or a CPU generator seeded with 0 (every estimator's default)."""
    return torch.Generator().manual_seed(0) if generator is None else generator


def require_exact_target(data: Target | Tensor, estimator: str) -> Target:
    """The ``data`` argument as a target with closed-form marginals, or a clear error."""
    if not isinstance(data, Target):
        raise ValueError(
            f"estimator {estimator!r} needs the target itself (a Target), not training samples"
        )
    if not data.has_marginals:
        raise ValueError(exact_target_message(estimator, data.name))
    return data


def exact_target_message(estimator: str, target: str) -> str:
    """The one message for an estimator that needs exact scores on a target without them (``fit``
    and suite validation say the same), naming the registered targets that have them."""
    from ..targets import exact_score_targets

    return (f"estimator {estimator!r} needs exact scores, which target {target!r} does not have; "
            f"targets with exact scores: {', '.join(exact_score_targets())}")


#: every component this registry builds, plugins included, must be one
ESTIMATORS.base = Estimator
