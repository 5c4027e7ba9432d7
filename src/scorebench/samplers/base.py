"""The sampler contract: explicit-noise steps driven over a decreasing time grid.

A sampler is a small class whose :meth:`Sampler.step` maps the particles at time ``t`` to
time ``t_next < t`` given the score model, the process and the step's standard normal
noise, passed in explicitly with shape ``(n, noise_per_step, d)``.  :meth:`Sampler.sample`
draws the initial state and the noise from a :class:`~scorebench.samplers.noise.NoiseSource`
and runs the steps, in chunks of particles if asked.  Because noise enters as an argument,
a step whose score is affine in ``x`` is an affine map ``x' = A x + c + B z``, and
:mod:`scorebench.exact` propagates Gaussian laws through it with no sampling noise.

Registering a new sampler::

    @SAMPLERS.register("my_sampler")
    class MySampler(Sampler):
        noise_per_step = 1
        def step(self, score, process, x, t, t_next, noise):
            ...

Run state.  A sampler instance holds only its settings: one instance can run any number of
times, on any seed and grid, and gives what a fresh instance gives.  Whatever a sampler learns
during one run (a plan of its steps, trained maps, per-step diagnostics) lives in a
:class:`RunState` that :meth:`Sampler.begin` returns and that :meth:`Sampler.step` receives as the
keyword argument ``state`` when its signature names it (a step without ``state`` is called as
before).  :meth:`RunState.info` turns the state into ``SampleResult.info``, and the state itself
is ``SampleResult.state``.
"""

from __future__ import annotations

import inspect
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from ..params import Boolean, Parameterised
from ..processes import check_grid, time_grid
from ..registry import Registry
from ..targets.base import check_count, check_points
from .noise import NoiseSource

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

SAMPLERS: Registry[Sampler] = Registry("sampler", "scorebench.samplers")


class RunState:
    """What a sampler learns during one run: returned by :meth:`Sampler.begin`, passed to every
    :meth:`Sampler.step` of that run (when the step takes ``state``), returned as
    ``SampleResult.state``.

    The base state is empty.  A sampler that plans or learns subclasses it (usually as a
    dataclass) and overrides :meth:`info`.
    """

    def info(self) -> dict[str, Any]:
        """The run's diagnostics, JSON-serialisable: ``SampleResult.info`` and, in a suite run, the
        ``info`` of the cell's record in ``samples.jsonl`` (none by default)."""
        return {}


@dataclass
class SampleResult:
    """Output of :meth:`Sampler.sample`.

    ``nfe`` is the number of score evaluations per particle trajectory; ``info`` the sampler's
    diagnostics (:meth:`RunState.info`) and ``state`` the run state itself (for ``jko_flow`` the
    trained flow, with its ``forward``, ``inverse`` and ``log_density``).
    """

    samples: Tensor
    nfe: int
    steps: int
    grid: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    state: RunState = field(default_factory=RunState)


S = TypeVar("S", bound=RunState)

#: the keyword arguments :meth:`Sampler.begin` may declare, each passed only where declared
BEGIN_KEYWORDS = ("seed", "x_init")


def _declared(func: Callable[..., Any], names: Sequence[str]) -> frozenset[str]:
    """Which of ``names`` ``func`` accepts as keyword arguments (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset(names)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(n for n in names if n in params and params[n].kind in keyword)


class Sampler(Parameterised, ABC):
    """A reverse-time sampler driven by explicit noise.

    Subclasses set ``noise_per_step`` (standard normal ``d``-vectors drawn per particle per
    step; the last one is the step's output noise, dropped on the final step when
    ``noise_removal`` is on) and implement :meth:`step`.
    """

    registered_name: ClassVar[str] = ""
    noise_per_step: int = 1
    noise_removal: bool = False
    param_constraints: ClassVar[dict] = {"noise_removal": Boolean()}
    #: whether :meth:`step` takes the run state (``state=``) and which :data:`BEGIN_KEYWORDS`
    #: :meth:`begin` declares; read off the signatures once per class
    _step_takes_state: ClassVar[bool] = False
    _begin_keywords: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._step_takes_state = "state" in _declared(cls.step, ("state",))
        cls._begin_keywords = _declared(cls.begin, BEGIN_KEYWORDS)

    def __init__(self, noise_removal: bool = False) -> None:
        self.set_params_from(noise_removal=noise_removal)

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

    @property
    def affine(self) -> bool:
        """Whether a step is affine in ``(x, noise)`` whenever the score is affine in ``x``."""
        return True

    @property
    def batch_invariant(self) -> bool:
        """Whether a particle's path is independent of the other particles in its batch
        (then any ``chunk_size`` gives the same result)."""
        return True

    @property
    def gradient_flow(self) -> bool:
        """Whether the sampler is a gradient flow toward ``p_{t_min}`` (a JKO scheme) rather than
        a time reversal of the forward process.

        A time reversal's output approaches ``p_{t_min}`` as its grid is refined.  A gradient
        flow's output approaches the law at time :meth:`flow_time` of the Langevin diffusion
        ``dX = grad log p_{t_min}(X) dt + sqrt(2) dW`` started from its initial law, and
        reaches ``p_{t_min}`` only as that time grows; it starts from its own initial law,
        never from draws of ``p_T``.
        """
        return False

    def flow_time(self, process: ForwardProcess, grid: Tensor) -> float:
        """Total flow time of a gradient-flow sampler on ``grid`` (the sum of its step sizes)."""
        raise NotImplementedError(f"sampler {self.name!r} is a time reversal, not a gradient flow")

    @abstractmethod
    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        """Move ``x`` (shape ``(n, d)``) from time ``t`` to ``t_next < t``.

        ``noise`` has shape ``(n, noise_per_step, d)``, or is ``None`` when
        ``noise_per_step == 0``.  ``x`` and the returned tensor may be non-contiguous (a step
        through :meth:`ScoreModel.combine` can return a transposed view): use ``reshape``, not
        ``view``.  A step that declares a keyword argument ``state`` receives the run's
        :class:`RunState` (what :meth:`begin` returned) there; it records what it learns in the
        state, never on ``self``.
        """

    # -- hooks a sampler may override -------------------------------------------------
    def noise_slots(self, index: int) -> int:
        """Noise vectors step ``index`` (1-based) receives; ``noise_per_step`` by default."""
        return self.noise_per_step

    def start_time(self, process: ForwardProcess) -> float:
        """Time at which the chain starts from its initial law (``T`` by default)."""
        return process.T

    def initial_std(self, process: ForwardProcess) -> float:
        """Standard deviation of the isotropic initial law (the process's prior by default)."""
        return process.prior_std

    def begin(self, score: ScoreModel, process: ForwardProcess, grid: Tensor) -> RunState | None:
        """Called once per run, before the first step, with the resolved grid; returns the run's
        :class:`RunState` (``None``: an empty one).

        A sampler that plans its steps ahead (such as the exact Gaussian JKO scheme) or learns
        during the run returns its own state here.  An override may also declare the keyword
        arguments ``seed`` (the integer the run's noise source is seeded with) and ``x_init``
        (the initial particles, ``None`` when the run starts from :meth:`initial_std`'s law);
        each is passed only to a ``begin`` that names it.
        """
        return RunState()

    # -- one run, for callers that drive the steps themselves ---------------------------
    def open_run(
        self, score: ScoreModel, process: ForwardProcess, grid: Tensor, *, seed: int = 0,
        x_init: Tensor | None = None,
    ) -> RunState:
        """:meth:`begin`, given the keyword arguments it declares, with ``None`` turned into an
        empty :class:`RunState`; raises ``ValueError`` if ``begin`` returned anything else."""
        given = {"seed": seed, "x_init": x_init}
        state = self.begin(score, process, grid, **{k: given[k] for k in self._begin_keywords})
        if state is None:
            return RunState()
        if not isinstance(state, RunState):
            raise ValueError(
                f"sampler {self.name!r}: begin must return a scorebench.samplers.RunState or None, "
                f"got {type(state).__name__}"
            )
        return state

    def run_step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None, *, state: RunState,
    ) -> Tensor:
        """:meth:`step`, with ``state=state`` when the step takes the run state."""
        if self._step_takes_state:
            return self.step(score, process, x, t, t_next, noise, state=state)  # type: ignore[call-arg]
        return self.step(score, process, x, t, t_next, noise)

    def state_of(self, state: RunState | None, kind: type[S]) -> S:
        """``state`` if it is a ``kind`` (the state this sampler's :meth:`begin` returns); otherwise
        a ``ValueError`` saying that the step runs only inside a run begun by :meth:`begin`."""
        if not isinstance(state, kind):
            got = "no state" if state is None else f"a {type(state).__name__}"
            raise ValueError(
                f"sampler {self.name!r}: step needs the {kind.__name__} its begin returns (got {got}); "
                "call begin first and pass its result as state="
            )
        return state

    # -- driver ----------------------------------------------------------------------
    def resolve_grid(self, process: ForwardProcess, grid: Tensor | Sequence[float] | int) -> Tensor:
        """An int means that many uniform steps; otherwise a validated decreasing grid."""
        if isinstance(grid, bool) or (isinstance(grid, numbers.Real) and not isinstance(grid, numbers.Integral)):
            raise ValueError(f"steps must be a positive integer, got {grid!r}")
        if isinstance(grid, numbers.Integral):
            return time_grid(process, int(grid))
        return check_grid(process, grid)

    def step_noise(self, z: Tensor | None, is_last: bool) -> Tensor | None:
        """The noise a step receives: ``z``, with the output slot zeroed on the last step
        when ``noise_removal`` is on (score_sde's ``noise_removal``)."""
        if z is None or not (is_last and self.noise_removal):
            return z
        z = z.clone()
        z[:, -1] = 0
        return z

    def steps_of(self, grid: Tensor) -> Iterator[tuple[int, float, float, bool]]:
        """``(index, t, t_next, is_last)`` for each step, index starting at 1."""
        times = grid.tolist()
        n = len(times) - 1
        for i in range(n):
            yield i + 1, times[i], times[i + 1], i == n - 1

    def sample(
        self,
        score: ScoreModel,
        process: ForwardProcess,
        n: int,
        grid: Tensor | Sequence[float] | int,
        generator: torch.Generator,
        *,
        x_init: Tensor | None = None,
        chunk_size: int | None = None,
        dtype: torch.dtype = torch.float32,
        callback: Callable[[int, float, Tensor, int], None] | None = None,
        compile: bool = False,
    ) -> SampleResult:
        """Draw ``n`` samples by running the reverse chain over ``grid``.

        The initial state is ``x_init`` if given (shape ``(n, d)``, e.g. exact draws of
        ``p_T``; a wrong shape or a NaN or inf entry is refused, see :meth:`check_init`) and the
        prior ``N(0, prior_std^2 I)`` otherwise.  Particles run in chunks of
        ``chunk_size`` (all at once by default); the noise each particle sees does not depend
        on the chunking, so results agree up to floating-point rounding of batched kernels
        (exactly in float64 up to ~1e-12; in float32 up to ~1e-5 relative).  Noise comes in
        blocks of ``NOISE_BLOCK`` particles that every overlapping chunk regenerates, so use
        chunks of at least that size.
        Draws are made on ``generator.device``.  ``callback(step, t_next, x, start)``, if
        given, sees each chunk's particles after every step (``start`` is the index of the
        chunk's first particle; the tensor may be non-contiguous).
        ``compile=True`` runs the score model's kernel through ``torch.compile`` where it has
        one (:attr:`ScoreModel.compile`: the exact mixture score does); the first call compiles
        (seconds to a minute), the results equal the eager ones to float rounding.
        """
        check_count(n)
        if chunk_size is not None:
            check_count(chunk_size, "chunk_size")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        grid = self.resolve_grid(process, grid)
        start = self.start_time(process)
        if abs(grid[0].item() - start) > 1e-9 * max(1.0, start) and x_init is None:
            raise ValueError(
                f"a grid starting at {grid[0].item()} instead of {start} needs x_init: "
                f"the initial law is only the law at {start}"
            )
        d = score.dim
        if x_init is not None:
            self.check_init(x_init, n, d)
            dtype = x_init.dtype
        noise = NoiseSource.from_generator(generator, dtype)
        compiled_before, score.compile = score.compile, bool(compile)
        try:
            return self._run(score, process, n, grid, noise, d, x_init, chunk_size, callback)
        finally:
            score.compile = compiled_before

    def _run(self, score: ScoreModel, process: ForwardProcess, n: int, grid: Tensor, noise: NoiseSource, d: int,
             x_init: Tensor | None, chunk_size: int | None,
             callback: Callable[[int, float, Tensor, int], None] | None) -> SampleResult:
        calls_at_start = score.calls
        state = self.open_run(score, process, grid, seed=noise.seed, x_init=x_init)
        chunk = n if chunk_size is None else chunk_size
        std = self.initial_std(process)
        out = []
        nfe = 0
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            if x_init is None:
                x = std * noise.normal(0, lo, hi, (d,))
            else:
                x = x_init[lo:hi].to(noise.device)
            for i, t, t_next, is_last in self.steps_of(grid):
                m = self.noise_slots(i)
                z = noise.normal(i, lo, hi, (m, d)) if m > 0 else None
                x = self.run_step(score, process, x, t, t_next, self.step_noise(z, is_last), state=state)
                if not isinstance(x, Tensor) or x.shape != (hi - lo, d):
                    got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                    raise ValueError(
                        f"sampler {self.name!r}: step {i} (t = {t:.4g} -> {t_next:.4g}) returned {got}; "
                        f"expected a tensor of shape {(hi - lo, d)}"
                    )
                if callback is not None:
                    callback(i, t_next, x, lo)
            if lo == 0:
                nfe = score.calls - calls_at_start
            out.append(x)
        return SampleResult(torch.cat(out), nfe=nfe, steps=grid.numel() - 1, grid=grid, info=state.info(),
                            state=state)

    def check_init(self, x_init: Tensor, n: int, d: int) -> None:
        """Refuse an initial state that is not a floating tensor of shape ``(n, d)`` or has a NaN
        or inf entry (every particle started there would stay non-finite, and a metric of the
        output would be meaningless), with a ``ValueError`` naming the sampler."""
        what = f"sampler {self.name!r}: x_init"
        check_points(x_init, d, what)
        if x_init.shape[0] != n:
            raise ValueError(f"{what} must have {n} rows (one per particle), got {x_init.shape[0]}")
        finite = torch.isfinite(x_init)
        if not bool(finite.all()):
            rows = int((~finite).any(dim=1).sum())
            raise ValueError(
                f"{what} is not finite: NaN or inf in {rows} of its {n} rows ({int((~finite).sum())} entries)"
            )


#: every component this registry builds, plugins included, must be one
SAMPLERS.base = Sampler
