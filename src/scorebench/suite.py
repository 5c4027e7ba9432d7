"""Suite files: parse, validate before anything runs, and expand into cells.

A suite is a TOML file::

    [suite]
    name = "smoke"          # required: letters, digits, '-', '_'
    seed = 0                # suite seed: every generator derives from (seed, cell)
    device = "auto"         # auto | cpu | cuda | cuda:N
    dtype = "float32"       # float32 | float64
    timeout = 600           # optional: seconds a cell may run; past it the cell is stopped (status timeout)
    compile = false         # optional: run the exact mixture score through torch.compile (run --compile)
    decompose = false       # optional: error decomposition rows (each cell with ground truth runs again
                            # with each error source removed: exact start, exact score, fine grid)
    decompose_steps = 1000  # optional, with decompose: the fine grid's steps

    [targets.ring]          # a label, used in result tables
    name = "gmm"            # registered name (defaults to the label), or a plugin outside scorebench:
                            # 'package.module:Name' or 'path/to/file.py:Name' (the current directory,
                            # then this file's folder; loading it runs its code)
    preset = "ring8"        # every other key is a constructor parameter

    [processes.vp]
    [estimators.oracle]
    [samplers.heun]
    name = "pf_ode"
    method = "heun"

    [metrics]               # metric name = { parameters }
    sliced_w2 = {}
    mmd = {}

    [[grid]]                # one or more grids; each crosses its lists
    targets = ["ring"]      # labels (default: all of that section)
    samplers = ["heun"]
    steps = [20, 50]        # required
    n_samples = [500]       # required
    seeds = [0, 1]          # replicates (default [0])
    time_grid = ["uniform"] # uniform | quadratic | karras | log
    init = "prior"          # prior | exact, or both as a list (see below)
    metrics = ["mmd"]       # subset of [metrics] (default: all)

``init`` is where each chain starts: ``"prior"`` (default), the sampler's own initial law
(``N(0, prior_std^2 I)`` for a time reversal), as a practitioner runs it; ``"exact"``, exact
draws of ``p_T`` (``T`` the sampler's start time), and for exact-law metrics the exact ``p_T``
as the initial law, so that the error measured is the discretisation (and score) error alone,
without the initialisation error a probability-flow ODE never contracts.  ``"exact"`` needs a
target with exact marginals and a time-reversal sampler (a JKO gradient flow starts from its
own law).

``decompose = true`` adds to every cell whose target has exact marginals (ground truth) its
variants, each removing one source of error by common random numbers (:meth:`Suite.variants`,
docs/theory.md F.7): ``exact_start`` (exact ``p_T`` draws instead of the prior), ``exact_score``
(the oracle instead of the cell's estimator) and ``fine_grid`` (``decompose_steps`` steps).  Their
rows carry the ``ablation`` column; a grid's own cells have ``ablation = "none"``.  Cells of
targets without exact marginals run as usual and get no variants; a decomposed suite none of whose
targets has exact marginals is an error.  It multiplies the cost by up to four.

Every mistake raises one :class:`SuiteError` naming the file, the key path and what is
allowed.  Incompatible choices (an oracle estimator or a score metric on a target without
exact scores, an exact-law metric on a non-affine sampler, a capped metric above its cap)
are errors too, found before any cell runs.

``scorebench validate`` is the gate for ``scorebench run``: what the run would refuse or crash on
is refused here, before anything is built.  Besides the checks above:

* the file must be a readable, non-empty UTF-8 text file of at most :data:`MAX_SUITE_BYTES`,
  with arrays and tables nested at most :data:`MAX_NESTING` deep;
* ``suite.name`` (a folder name under ``results/``) has at most :data:`MAX_NAME_LENGTH`
  characters, labels (used in report file names) at most :data:`MAX_LABEL_LENGTH`;
* seeds lie in ``0 <= seed < 2**63`` and steps and sample sizes fit a 64-bit integer (the result
  table's columns); integer parameters fit 64 bits, and numeric parameters are finite unless the
  component lists the parameter in its ``nonfinite_params`` attribute (TOML allows ``nan`` and
  ``inf``); a parameter annotated ``int`` takes an integer, one annotated ``float`` a number
  (``true`` is neither);
* the memory the largest tensors of each target and each cell need, estimated from the
  parameters before anything is allocated (:func:`scorebench.validation.bytes_needed`), must fit
  the memory available on this machine;
* a suite expands to at most :data:`MAX_CELLS` cells and :data:`MAX_RUNS` cell x seed runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .claims.format import ClaimError, parse_claims, suite_labels
from .estimators import ESTIMATORS
from .estimators.base import exact_target_message
from .metrics import METRICS
from .params import ParameterError
from .plugins import PluginError, is_spec, resolve_spec
from .processes import GRID_KINDS, PROCESSES
from .registry import Registry
from .samplers import SAMPLERS
from .schema import CELL_COLUMNS
from .targets import TARGETS, exact_score_targets
from .validation import (
    INT64_MAX,
    INT64_MIN,
    available_memory,
    bytes_needed,
    format_bytes,
    is_int64,
    is_int_at_least,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECTIONS: dict[str, Registry] = {
    "targets": TARGETS,
    "processes": PROCESSES,
    "estimators": ESTIMATORS,
    "samplers": SAMPLERS,
}
TOP_KEYS = ("suite", *SECTIONS, "metrics", "grid", "claims")
SUITE_KEYS = ("name", "description", "seed", "device", "dtype", "timeout", "compile", "decompose", "decompose_steps")
GRID_KEYS = ("targets", "processes", "estimators", "samplers", "steps", "n_samples", "seeds", "time_grid", "init",
             "metrics")
#: where a chain starts: the sampler's own initial law, or exact draws of p_T
INITS = ("prior", "exact")
#: the error source each variant of a decomposed cell removes (``none``: the cell as the grid gives it)
ABLATIONS = ("none", "exact_start", "exact_score", "fine_grid")
#: the fine grid's steps of a decomposed suite when ``decompose_steps`` is not given
DEFAULT_DECOMPOSE_STEPS = 1000
DTYPES = ("float32", "float64")
#: CUDA device indices above 127 wrap around in torch (``cuda:128`` is ``cuda:-128``)
DEVICE_RE = re.compile(r"auto|cpu|cuda(:(0|[1-9]\d?|1[01]\d|12[0-7]))?")
NAME_RE = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch: '$' would let a trailing newline through
#: longest suite name: it is a folder name, ``results/<name>/<run-id>``
MAX_NAME_LENGTH = 100
#: longest component label: labels end up in the file names of reports
MAX_LABEL_LENGTH = 64
#: seeds lie in ``0 <= seed < SEED_LIMIT`` (an int64 column of the result table)
SEED_LIMIT = 2**63
#: deepest nesting of arrays and tables in a suite file (a (K, d, d) covariance needs 6)
MAX_NESTING = 32
#: largest suite file read
MAX_SUITE_BYTES = 256 * 2**20
#: most cells a suite may expand to (each grid counted in full, before duplicates merge)
MAX_CELLS = 1_000_000
#: most cell x seed runs a suite may expand to (counted the same way)
MAX_RUNS = 10_000_000
#: characters of the suite text kept by :attr:`Suite.text_excerpt`
TEXT_EXCERPT_CHARS = 64 * 1024
#: a component whose canonical JSON is longer enters cell keys by its sha256 (see :meth:`Suite.cells`)
COMPONENT_INLINE_CHARS = 4096
#: a problem longer than this is cut in error messages (a parameter's repr can be megabytes)
MAX_MESSAGE_CHARS = 2000
#: (attribute of a Cell, grid key) of every axis a grid crosses
AXES = (("target", "targets"), ("process", "processes"), ("estimator", "estimators"), ("sampler", "samplers"),
        ("steps", "steps"), ("n_samples", "n_samples"), ("time_grid", "time_grid"), ("init", "init"))
#: int and float annotations of the constructor parameters of a component without declared
#: constraints (a plugin), checked from the annotation alone
INT_ANNOTATIONS = ("int", "int | None", "None | int", "Optional[int]")
FLOAT_ANNOTATIONS = ("float", "float | None", "None | float", "Optional[float]")
#: (dim, n_components) of the gmm presets
GMM_PRESET_SHAPES = {"ring8": (2, 8), "gmm40": (2, 40), "random": (10, 5)}


class SuiteError(ValueError):
    """A malformed or inconsistent suite file."""


@dataclass(frozen=True)
class ComponentSpec:
    """A labelled component: registered ``name`` and constructor ``params``."""

    label: str
    name: str
    params: dict[str, Any] = field(hash=False)
    #: ``name`` with a plugin file's path made absolute (what is built; ``name`` is what is recorded)
    resolved: str = field(default="", compare=False)

    @property
    def is_plugin_spec(self) -> bool:
        return is_spec(self.name)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


@dataclass(frozen=True)
class Cell:
    """One point of the grid; it runs once per seed."""

    target: str
    process: str
    estimator: str
    sampler: str
    steps: int
    n_samples: int
    time_grid: str
    metrics: tuple[str, ...]
    cell_id: str
    init: str = "prior"
    #: the error source this cell removes from its parent (:data:`ABLATIONS`; ``"none"``: a grid's own cell)
    ablation: str = "none"

    def labels(self) -> dict[str, Any]:
        """The cell's result-table identity: its value of every :data:`~scorebench.schema.CELL_COLUMNS` column."""
        return {c: getattr(self, c) for c in CELL_COLUMNS}


@dataclass
class Suite:
    """A validated suite.  Its grids are read-only once validated (:meth:`seeds_of` indexes them)."""

    name: str
    path: Path
    text: str
    seed: int
    device: str
    dtype: str
    description: str
    components: dict[str, dict[str, ComponentSpec]]
    metrics: dict[str, dict[str, Any]]
    grids: list[dict[str, Any]]
    #: seconds a cell may run before it is stopped (``None``: no limit; ``--timeout`` overrides)
    timeout: float | None = None
    #: run score kernels through ``torch.compile`` (``Sampler.sample(..., compile=True)``)
    compile: bool = False
    #: the suite's ``[[claims]]`` tables, as written (:mod:`scorebench.claims` reads and checks them)
    claims: list[dict[str, Any]] = field(default_factory=list)
    #: add the error-decomposition variants of every cell with ground truth (see :meth:`cells`)
    decompose: bool = False
    #: the steps of a decomposed cell's ``fine_grid`` variant
    decompose_steps: int = DEFAULT_DECOMPOSE_STEPS
    #: the target labels with exact marginals (ground truth) and the gradient-flow sampler labels,
    #: read off the built components when the suite is parsed (:meth:`cells` builds nothing)
    ground_truth_targets: frozenset[str] = frozenset()
    gradient_flow_samplers: frozenset[str] = frozenset()
    #: in a :meth:`quick` suite, the training budgets it cut: estimator label -> parameter -> [full, quick]
    quick_cuts: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    #: (the grids indexed, per grid: a set per axis and the seeds), built on first use
    _index: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def text_excerpt(self) -> str:
        """The suite text to store beside results: all of it up to :data:`TEXT_EXCERPT_CHARS`
        characters, else its start and a note of how much was left out and the whole text's sha256."""
        if len(self.text) <= TEXT_EXCERPT_CHARS:
            return self.text
        rest = len(self.text) - TEXT_EXCERPT_CHARS
        return f"{self.text[:TEXT_EXCERPT_CHARS]}\n[... {rest} more characters; sha256 {self.sha256}]\n"

    def spec(self, section: str, label: str) -> ComponentSpec:
        return self.components[section][label]

    def build(self, section: str, label: str) -> Any:
        spec = self.spec(section, label)
        return SECTIONS[section].build(spec.resolved or spec.name, **spec.params)

    def build_metric(self, name: str) -> Any:
        return METRICS.build(name, **self.metrics[name])

    def cells(self) -> list[Cell]:
        """Every cell of every grid, in file order, without duplicates, then (in a ``decompose``
        suite) the error-decomposition variants of the grids' cells, in the same order.

        A cell's id is the sha256 of the canonical JSON of its components (one with very long
        parameters by its own sha256, see :func:`_component_json`), labels and settings.  The JSON
        is assembled from pieces formatted once per component, so expanding a grid costs time
        linear in its cells, not in cells x the size of their parameters.

        Variants (:meth:`variants`) take the id of the cell their labels describe, hashed with
        their ``ablation``: they never share an id with a grid's own cell.
        """
        comp = {section: {label: _component_json(spec.as_dict()) for label, spec in table.items()}
                for section, table in self.components.items()}
        out: dict[str, Cell] = {}
        for g in self.grids:
            metrics = tuple(g["metrics"])
            for tl, pl, el, sl in itertools.product(g["targets"], g["processes"], g["estimators"], g["samplers"]):
                pieces = []
                for n, kind, init in itertools.product(g["n_samples"], g["time_grid"], g["init"]):
                    head, tail = _key_pieces(comp, tl, pl, el, sl, n, kind, init)
                    pieces.append((n, kind, init, head, tail))
                for steps in g["steps"]:
                    steps_json = str(steps) if type(steps) is int else _key_json(steps)
                    for n, kind, init, head, tail in pieces:
                        cell_id = hashlib.sha256(f"{head}{steps_json}{tail}".encode()).hexdigest()[:16]
                        _add_cell(out, Cell(tl, pl, el, sl, steps, n, kind, metrics, cell_id, init))
        if self.decompose:
            for parent in list(out.values()):
                for variant in self.variants(parent, comp):
                    _add_cell(out, variant)
        return list(out.values())

    def variants(self, parent: Cell, comp: dict[str, dict[str, str]] | None = None) -> list[Cell]:
        """The error-decomposition variants of ``parent`` (a grid's own cell), each removing one
        source of error (docs/theory.md F.7):

        ``exact_start``
            ``init = "exact"``: chains start from exact draws of ``p_T`` instead of the prior (the
            initialisation, or truncation, error); not for a cell that already starts exactly, nor
            for a gradient-flow sampler (it starts from its own law);
        ``exact_score``
            the exact score (the ``oracle`` estimator, built by the run) instead of the cell's
            estimator (the score error); not for a cell whose estimator is already the oracle;
        ``fine_grid``
            :attr:`decompose_steps` steps on the same time-grid kind (the discretisation error); not
            for a cell with at least that many steps.

        A variant keeps every other label of its parent, the ``estimator`` label included (the
        ``ablation`` column says that the oracle replaced it).  Every generator derives from the
        cell's components, sizes and seed, never from its id or ablation, so a variant draws its
        start and, on an unchanged grid, its step noise from its parent's generators (common random
        numbers) and shares its parent's fit.  Cells whose target has no exact marginals (no ground
        truth for the exact start and score) get no variants.
        """
        if parent.ablation != "none" or parent.target not in self.ground_truth_targets:
            return []
        if comp is None:
            comp = {section: {label: _component_json(spec.as_dict()) for label, spec in table.items()}
                    for section, table in self.components.items()}
        changes: list[tuple[str, dict[str, Any]]] = []
        if parent.init == "prior" and parent.sampler not in self.gradient_flow_samplers:
            changes.append(("exact_start", {"init": "exact"}))
        if self.components["estimators"][parent.estimator].name != "oracle":
            changes.append(("exact_score", {}))
        if parent.steps < self.decompose_steps:
            changes.append(("fine_grid", {"steps": self.decompose_steps}))
        out = []
        for ablation, change in changes:
            cell = replace(parent, **change)
            head, tail = _key_pieces(comp, cell.target, cell.process, cell.estimator, cell.sampler, cell.n_samples,
                                     cell.time_grid, cell.init)
            plain_id = hashlib.sha256(f"{head}{_key_json(cell.steps)}{tail}".encode()).hexdigest()[:16]
            variant_id = hashlib.sha256(_key_json({"ablation": ablation, "cell": plain_id}).encode()).hexdigest()[:16]
            out.append(replace(cell, cell_id=variant_id, ablation=ablation))
        return out

    def _grid_index(self) -> list[tuple[dict[str, frozenset], list[int]]]:
        if self._index is None or self._index[0] is not self.grids:
            index = [({key: frozenset(g[key]) for _, key in AXES}, list(g["seeds"])) for g in self.grids]
            self._index = (self.grids, index)
        return self._index[1]

    def seeds_of(self, cell: Cell) -> list[int]:
        """The seeds ``cell`` runs with: those of every grid that holds it, in file order.

        A decomposition variant runs with the seeds of its parents: the cells it was made from.
        """
        if cell.ablation == "exact_start":
            cell = replace(cell, init="prior")
        fine = cell.ablation == "fine_grid"
        seeds: dict[int, None] = {}
        for sets, grid_seeds in self._grid_index():
            if all(getattr(cell, attr) in sets[key] for attr, key in AXES if not (fine and attr == "steps")) and (
                    not fine or min(sets["steps"]) < self.decompose_steps):
                seeds.update(dict.fromkeys(grid_seeds))
        return list(seeds)

    def quick(self) -> Suite:
        """The ``--quick`` version: the smallest step count and sample size of each grid, at most two
        seeds, and the training budget of each learned estimator cut to its quick value.

        Each estimator's class says what quick means for it (``Estimator.quick_params``): each of
        its ``budget_params`` (iterations, training set size, ...) is capped at its value in the
        class's ``test_params``, the sizes its conformance tests and benchmarks run at (a smaller
        value given in the file stays); oracles have no budget and are unchanged.  A cut estimator has other parameters,
        so its cells other ids than in the full suite (and other generators); an unchanged one
        keeps them.  :attr:`quick_cuts` records the cuts (see :func:`describe_quick_cuts`).
        """
        grids = [
            {**g, "steps": [min(g["steps"])], "n_samples": [min(g["n_samples"])], "seeds": g["seeds"][:2]}
            for g in self.grids
        ]
        used = {label for g in grids for label in g["estimators"]}
        estimators = dict(self.components["estimators"])
        cuts = {label: dict(done) for label, done in self.quick_cuts.items()}
        for label, spec in estimators.items():
            if label not in used:
                continue
            factory = ESTIMATORS.factory(spec.resolved or spec.name)
            params = factory.quick_params(dict(spec.params)) if hasattr(factory, "quick_params") else spec.params
            changed = [k for k in params if params[k] != spec.params.get(k, _MISSING)]
            if not changed:
                continue
            full = self.build("estimators", label).describe()
            cuts[label] = {k: [spec.params.get(k, full.get(k)), params[k]] for k in changed}
            estimators[label] = replace(spec, params=params)
        return replace(self, grids=grids, components={**self.components, "estimators": estimators},
                       quick_cuts=cuts)


#: a parameter absent from a spec (distinct from every value, ``None`` included)
_MISSING = object()


def describe_quick_cuts(cuts: dict[str, dict[str, list[Any]]]) -> str:
    """One line naming the training budgets ``--quick`` cut (:attr:`Suite.quick_cuts`), or ``""``::

        --quick: training budgets cut: mlp_dsm iterations 3000 -> 200, n_train 5000 -> 2000; ntk ...
    """
    if not cuts:
        return ""
    parts = [f"{label} " + ", ".join(f"{k} {was} -> {now}" for k, (was, now) in params.items())
             for label, params in cuts.items()]
    return "--quick: training budgets cut: " + "; ".join(parts)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _key_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _key_pieces(comp: dict[str, dict[str, str]], tl: str, pl: str, el: str, sl: str, n: int, kind: str,
                init: str) -> tuple[str, str]:
    """The canonical JSON of a cell's key before and after its step count (see :meth:`Suite.cells`)."""
    # json.dumps(key, sort_keys=True): estimator, [init], labels, n_samples, process, sampler,
    # steps, target, time_grid; prior-start cells keep the ids they had before init existed
    head = (f'{{"estimator": {comp["estimators"][el]}, '
            + (f'"init": {_key_json(init)}, ' if init != "prior" else "")
            + f'"labels": {_key_json([tl, pl, el, sl])}, "n_samples": {_key_json(n)}, '
            f'"process": {comp["processes"][pl]}, "sampler": {comp["samplers"][sl]}, "steps": ')
    tail = f', "target": {comp["targets"][tl]}, "time_grid": {_key_json(kind)}}}'
    return head, tail


def _add_cell(out: dict[str, Cell], cell: Cell) -> None:
    """Add ``cell`` to ``out`` by id; a cell already there gains the metrics it lacked."""
    have = out.get(cell.cell_id)
    if have is None:
        out[cell.cell_id] = cell
    elif not set(cell.metrics) <= set(have.metrics):
        out[cell.cell_id] = replace(have, metrics=tuple(dict.fromkeys(have.metrics + cell.metrics)))


def _component_json(spec: dict[str, Any]) -> str:
    """A component's canonical JSON in a cell key: itself, or where it is longer than
    :data:`COMPONENT_INLINE_CHARS` (megabytes of explicit means, say), ``{"sha256": <its digest>}``,
    so that hashing a cell costs a bounded time whatever the size of its parameters."""
    text = _key_json(spec)
    if len(text) > COMPONENT_INLINE_CHARS:
        return _key_json({"sha256": hashlib.sha256(text.encode()).hexdigest()})
    return text


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts: generators depend on what a draw is for, not
    on the order in which cells run."""
    return int(stable_hash(list(parts))[:16], 16) >> 1


# ---------------------------------------------------------------------------------------
# parsing and validation
# ---------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._available: tuple[int | None] | None = None

    def fail(self, key: str, problem: str) -> SuiteError:
        if len(problem) > MAX_MESSAGE_CHARS:
            problem = f"{problem[:MAX_MESSAGE_CHARS]} [... {len(problem) - MAX_MESSAGE_CHARS} more characters]"
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        return SuiteError(where + problem)

    def check_memory(self, key: str, needed: int, what: str) -> None:
        """Refuse ``needed`` bytes when this machine has less memory available (read once per file)."""
        if self._available is None:
            self._available = (available_memory(),)
        available = self._available[0]
        if available is not None and needed > available:
            raise self.fail(
                key, f"{what} needs about {format_bytes(needed)} ({needed} bytes) of memory, more than the "
                f"{format_bytes(available)} ({available} bytes) available on this machine; make it smaller",
            )


def _allowed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _check_keys(ctx: _Ctx, table: dict, allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.fail(f"{where}.{key}" if where else key, f"unknown key; allowed: {_allowed(allowed)}")


def _int_list(ctx: _Ctx, value: Any, key: str, minimum: int, limit: int = INT64_MAX + 1) -> list[int]:
    """A non-empty list of integers in ``minimum <= v < limit`` (a single integer is a list of one)."""
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise ctx.fail(key, "empty list; give at least one value")
    for v in value:
        if not is_int_at_least(v, minimum):
            raise ctx.fail(key, f"expected integers >= {minimum}, got {v!r}")
        if v >= limit:
            bound = "2**63 (a 64-bit integer)" if limit == INT64_MAX + 1 else str(limit)
            raise ctx.fail(key, f"expected integers < {bound}, got {v}")
    return list(dict.fromkeys(value))


def _choice_list(ctx: _Ctx, value: Any, key: str, allowed: Sequence[str], what: str) -> list[str]:
    """A string or a non-empty list of strings from ``allowed``, without repeats."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise ctx.fail(key, f"expected a string or a non-empty list; allowed: {_allowed(allowed)}")
    for v in values:
        if v not in allowed:
            raise ctx.fail(key, f"unknown {what} {v!r}; allowed: {_allowed(allowed)}")
    return list(dict.fromkeys(values))


def _label_list(ctx: _Ctx, value: Any, key: str, defined: Sequence[str]) -> list[str]:
    if value is None:
        return list(defined)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ctx.fail(key, f"expected a list of labels, got {type(value).__name__}")
    if not value:
        raise ctx.fail(key, "empty list; give at least one label")
    known = set(defined)
    for v in value:
        if not isinstance(v, str) or v not in known:
            raise ctx.fail(key, f"unknown label {v!r}; defined: {_allowed(defined)}")
    return list(dict.fromkeys(value))


def _check_label(ctx: _Ctx, key: str, label: Any) -> None:
    if not isinstance(label, str) or not NAME_RE.fullmatch(label):
        raise ctx.fail(key, "labels may contain letters, digits, '-' and '_' only")
    if len(label) > MAX_LABEL_LENGTH:
        raise ctx.fail(key, f"label of {len(label)} characters; at most {MAX_LABEL_LENGTH} (labels name report files)")


def _check_nesting(ctx: _Ctx, data: dict[str, Any]) -> None:
    """Refuse arrays and tables nested deeper than :data:`MAX_NESTING` (iteratively: a deep
    structure must not exhaust the stack here, nor later in ``repr`` or ``json.dumps``)."""
    stack: list[tuple[Any, int, Any, Any]] = [(data, 0, None, None)]  # value, depth, parent entry, name
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1]
        if depth > MAX_NESTING:
            parts = []
            while entry[2] is not None:
                parts.append(f"[{entry[3]}]" if isinstance(entry[3], int) else f".{entry[3]}")
                entry = entry[2]
            key = "".join(reversed(parts)).lstrip(".")
            raise ctx.fail(key, f"nesting too deep: arrays and tables may nest at most {MAX_NESTING} levels")
        children = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((v, depth + 1, entry, k) for k, v in children if isinstance(v, dict | list))


def _check_numbers(ctx: _Ctx, key: str, value: Any, allow_nonfinite: bool) -> None:
    """Refuse integers outside 64 bits and, unless allowed, non-finite floats anywhere in ``value``
    (iteratively, and building a key only for nested containers and the value refused)."""

    def at(where: str, k: Any) -> str:
        return where if k is None else f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}"

    stack: list[tuple[str, Any, Any]] = [(key, None, value)]  # where, index in the parent, value
    while stack:
        where, index, v = stack.pop()
        where = at(where, index)
        children = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ((None, v),)
        for k, x in children:
            if isinstance(x, dict | list):
                stack.append((where, k, x))
            elif isinstance(x, float):
                if not allow_nonfinite and not math.isfinite(x):
                    raise ctx.fail(at(where, k), f"non-finite number {x}; parameters must be finite")
            elif isinstance(x, int) and not isinstance(x, bool) and not INT64_MIN <= x <= INT64_MAX:
                raise ctx.fail(at(where, k), f"integer {x} does not fit in 64 bits (-2**63 <= n < 2**63)")


def _check_param_types(ctx: _Ctx, key: str, params: dict[str, Any], registry: Registry, name: str) -> None:
    """For a parameter without a declared constraint (:mod:`scorebench.params`; those were checked
    when the component was built): one annotated ``int`` takes an integer, one annotated ``float`` a
    number; ``true`` is neither."""
    try:
        annotations = {p.name: p.annotation for p in registry.params(name) if not p.allowed}
    except (ValueError, TypeError):
        return
    for pname, value in params.items():
        ann = annotations.get(pname)
        if ann in INT_ANNOTATIONS and not is_int64(value):
            raise ctx.fail(f"{key}.{pname}", f"expected an integer, got {value!r}")
        if ann in FLOAT_ANNOTATIONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ctx.fail(f"{key}.{pname}", f"expected a number, got {value!r}")


def _defaults(registry: Registry, name: str) -> dict[str, Any]:
    try:
        return {p.name: p.default for p in registry.params(name) if not p.required}
    except (ValueError, TypeError):
        return {}


def _target_shape(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> tuple[int, int, int, str] | None:
    """``(dim, n_components, (dim, dim) matrices it builds, the key that sets its size)`` of a target,
    read off its parameters before it is built; ``None`` where they do not say (a plugin without an
    integer ``dim``, or values the target itself will refuse)."""
    p = {**defaults, **params}
    if name == "gmm":
        preset = p.get("preset")
        if isinstance(preset, str) and preset in GMM_PRESET_SHAPES:
            dim, k = GMM_PRESET_SHAPES[preset]
            if preset == "random" and p.get("dim") is not None:
                dim = p["dim"]
            if p.get("n_components") is not None:
                k = p["n_components"]
            key = "dim" if "dim" in params and preset == "random" else "n_components" if "n_components" in params \
                else "preset"
            return (dim, k, 0, key) if is_int_at_least(dim, 1) and is_int_at_least(k, 1) else None
        means = p.get("means")
        if isinstance(means, list) and means and isinstance(means[0], list) and means[0]:
            return len(means[0]), len(means), 0, "means"
        return None
    dim, key = p.get("dim"), "dim"
    if name == "gaussian" and isinstance(p.get("cov"), list):
        dim, key = len(p["cov"]), "cov"
    if not is_int_at_least(dim, 1):
        return None
    square = name in ("gaussian", "gaussian_unknown_mean") or (name == "circle" and p.get("rotation_seed") is not None)
    return dim, 1, int(square), key


def _read_text(ctx: _Ctx, path: Path) -> str:
    """The text of a suite file, or a :class:`SuiteError` saying why there is none."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ctx.fail("", "suite file not found") from None
    except OSError as exc:
        raise ctx.fail("", f"cannot read the suite file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ctx.fail("", "is a directory, not a suite file")
    if not stat.S_ISREG(info.st_mode):
        raise ctx.fail("", "not a regular file (a suite is a TOML text file)")
    if info.st_size > MAX_SUITE_BYTES:
        raise ctx.fail("", f"file of {info.st_size} bytes; a suite file may have at most {MAX_SUITE_BYTES}")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise ctx.fail("", "cannot read the suite file: permission denied") from None
    except OSError as exc:
        raise ctx.fail("", f"cannot read the suite file: {exc.strerror or exc}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ctx.fail("", f"not a UTF-8 text file: NUL byte at offset {nul} (a binary or UTF-16 file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ctx.fail(
            "", f"not a UTF-8 text file: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8; "
            "save the suite as UTF-8"
        ) from None
    if not text.strip():
        raise ctx.fail("", "empty file; a suite needs [suite], [targets.<label>], [processes.<label>], "
                       "[estimators.<label>], [samplers.<label>], [metrics] and [[grid]]")
    return text


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raise :class:`SuiteError` on the first problem."""
    path = Path(path)
    ctx = _Ctx(path)
    text = _read_text(ctx, path)
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
        if not data:
            raise ctx.fail("", "empty file (comments only); a suite needs [suite], [targets.<label>], "
                           "[processes.<label>], [estimators.<label>], [samplers.<label>], [metrics] and [[grid]]")
        return parse_suite(data, path, text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.fail("", f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ctx.fail("", f"nesting too deep: arrays and tables may nest at most {MAX_NESTING} levels") from None
    except MemoryError:
        raise ctx.fail("", "out of memory while reading the suite file") from None


def parse_suite(data: dict[str, Any], path: Path, text: str = "") -> Suite:
    ctx = _Ctx(path)
    _check_nesting(ctx, data)
    _check_keys(ctx, data, TOP_KEYS, "")
    for required in ("suite", *SECTIONS, "grid"):
        if required not in data:
            raise ctx.fail(required, f"missing section [{required}]" if required != "grid" else "missing [[grid]]")

    head = data["suite"]
    if not isinstance(head, dict):
        raise ctx.fail("suite", "expected a table [suite]")
    _check_keys(ctx, head, SUITE_KEYS, "suite")
    name = head.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ctx.fail("suite.name", f"expected a name of letters, digits, '-' or '_', got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ctx.fail("suite.name", f"name of {len(name)} characters; at most {MAX_NAME_LENGTH} "
                       "(it names the folder results/<name>/)")
    seed = head.get("seed", 0)
    if not is_int_at_least(seed, 0) or seed >= SEED_LIMIT:
        raise ctx.fail("suite.seed", f"expected a non-negative integer < 2**63, got {seed!r}")
    device = head.get("device", "auto")
    if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
        raise ctx.fail("suite.device", f"got {device!r}; allowed: auto, cpu, cuda, cuda:N (N from 0 to 127)")
    dtype = head.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ctx.fail("suite.dtype", f"got {dtype!r}; allowed: {_allowed(DTYPES)}")
    description = head.get("description", "")
    if not isinstance(description, str):
        raise ctx.fail("suite.description", "expected a string")
    timeout = head.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout < math.inf):
        raise ctx.fail("suite.timeout", f"expected a positive number of seconds per cell, got {timeout!r}")
    compile_ = head.get("compile", False)
    if not isinstance(compile_, bool):
        raise ctx.fail("suite.compile", f"expected true or false, got {compile_!r}")
    decompose = head.get("decompose", False)
    if not isinstance(decompose, bool):
        raise ctx.fail("suite.decompose", f"expected true or false, got {decompose!r}")
    decompose_steps = head.get("decompose_steps", DEFAULT_DECOMPOSE_STEPS)
    if "decompose_steps" in head and not decompose:
        raise ctx.fail("suite.decompose_steps", "sets the fine grid of the error decomposition, which is off; "
                       "add decompose = true or remove decompose_steps")
    if not is_int_at_least(decompose_steps, 1) or decompose_steps > INT64_MAX:
        raise ctx.fail("suite.decompose_steps", f"expected a positive integer (the fine grid's steps), got "
                       f"{decompose_steps!r}")

    components: dict[str, dict[str, ComponentSpec]] = {}
    built: dict[str, dict[str, Any]] = {}
    #: target label -> (dim, n_components, matrices, key), where the parameters say
    shapes: dict[str, tuple[int, int, int, str] | None] = {}
    #: estimator label -> the training sample size a learned estimator draws
    n_train: dict[str, int] = {}
    for section, registry in SECTIONS.items():
        table = data[section]
        if not isinstance(table, dict) or not table:
            raise ctx.fail(section, f"expected at least one [{section}.<label>] table")
        components[section], built[section] = {}, {}
        for label, body in table.items():
            key = f"{section}.{label}"
            _check_label(ctx, key, label)
            if not isinstance(body, dict):
                raise ctx.fail(key, f"expected a table of parameters, got {type(body).__name__}")
            params = dict(body)
            comp = params.pop("name", label)
            resolved = comp
            if not isinstance(comp, str):
                raise ctx.fail(f"{key}.name", f"expected a string, got {comp!r}")
            if is_spec(comp):
                try:
                    resolved = resolve_spec(comp, [path.parent])
                except PluginError as exc:
                    raise ctx.fail(f"{key}.name", str(exc)) from None
                except OSError as exc:  # a file name too long for the file system, say
                    problem = f"{comp!r}: cannot look for the file: {exc.strerror or exc}"
                    raise ctx.fail(f"{key}.name", problem) from None
            elif comp not in registry:
                raise ctx.fail(
                    f"{key}.name", f"unknown {registry.kind} {comp!r}; allowed: {_allowed(registry.names())} "
                    "(or 'package.module:Name', 'path/to/file.py:Name')"
                )
            built[section][label] = _build(ctx, key, registry, resolved, comp, params, shapes, n_train, label)
            components[section][label] = ComponentSpec(label, comp, params, resolved)

    metrics_table = data.get("metrics", {})
    if isinstance(metrics_table, list):
        for i, m in enumerate(metrics_table):
            if not isinstance(m, str):
                raise ctx.fail(f"metrics[{i}]", f"expected a metric name, got {m!r}; allowed: "
                               f"{_allowed(METRICS.names())}")
        metrics_table = {m: {} for m in metrics_table}
    if not isinstance(metrics_table, dict) or not metrics_table:
        raise ctx.fail("metrics", f"expected at least one metric; allowed: {_allowed(METRICS.names())}")
    metrics: dict[str, dict[str, Any]] = {}
    built_metrics: dict[str, Any] = {}
    for mname, params in metrics_table.items():
        key = f"metrics.{mname}"
        if mname not in METRICS:
            raise ctx.fail(key, f"unknown metric; allowed: {_allowed(METRICS.names())}")
        if not isinstance(params, dict):
            raise ctx.fail(key, f"expected a table of parameters, got {type(params).__name__}")
        built_metrics[mname] = _build(ctx, key, METRICS, mname, mname, params)
        try:
            built_metrics[mname].check_declarations()
        except ValueError as exc:
            raise ctx.fail(key, str(exc)) from None
        metrics[mname] = dict(params)

    grids_raw = data["grid"]
    if isinstance(grids_raw, dict):
        grids_raw = [grids_raw]
    if not isinstance(grids_raw, list) or not grids_raw:
        raise ctx.fail("grid", "expected one or more [[grid]] tables")
    grids = []
    cells = runs = 0
    for i, g in enumerate(grids_raw):
        where = f"grid[{i}]"
        if not isinstance(g, dict):
            raise ctx.fail(where, "expected a table")
        _check_keys(ctx, g, GRID_KEYS, where)
        for required in ("steps", "n_samples"):
            if required not in g:
                raise ctx.fail(f"{where}.{required}", "missing; give a list of positive integers")
        grid = {
            section: _label_list(ctx, g.get(section), f"{where}.{section}", list(components[section]))
            for section in SECTIONS
        }
        grid["steps"] = _int_list(ctx, g["steps"], f"{where}.steps", 1)
        grid["n_samples"] = _int_list(ctx, g["n_samples"], f"{where}.n_samples", 2)
        grid["seeds"] = _int_list(ctx, g.get("seeds", [0]), f"{where}.seeds", 0, SEED_LIMIT)
        grid["time_grid"] = _choice_list(ctx, g.get("time_grid", "uniform"), f"{where}.time_grid", GRID_KINDS,
                                         "time grid")
        grid["init"] = _choice_list(ctx, g.get("init", "prior"), f"{where}.init", INITS, "start")
        grid["metrics"] = _label_list(ctx, g.get("metrics"), f"{where}.metrics", list(metrics))
        sizes = [len(grid[k]) for _, k in AXES]
        per_cell = 1 + (len(ABLATIONS) - 1) * decompose  # a decomposed cell runs with up to three variants
        cells += math.prod(sizes) * per_cell
        runs += math.prod(sizes) * per_cell * len(grid["seeds"])
        if cells > MAX_CELLS or runs > MAX_RUNS:
            what = f"{cells} cells" if cells > MAX_CELLS else f"{runs} cell x seed runs"
            raise ctx.fail(where, f"the suite expands to {what} up to this grid ({' x '.join(map(str, sizes))} "
                           f"cells and {len(grid['seeds'])} seeds here); at most {MAX_CELLS} cells and {MAX_RUNS} "
                           "runs per suite: split it, or give fewer values")
        _check_grid_memory(ctx, where, {**grid, "steps": [*grid["steps"], decompose_steps]} if decompose else grid,
                           shapes, n_train, built_metrics)
        _check_compatibility(ctx, where, grid, built, built_metrics)
        grids.append(grid)

    ground_truth = frozenset(label for label, target in built["targets"].items() if target.has_marginals)
    if decompose:
        used = {label for g in grids for label in g["targets"]}
        if not used & ground_truth:
            raise ctx.fail(
                "suite.decompose",
                f"no target of the grids has exact marginals ({', '.join(sorted(used))}), so no cell has the "
                "ground truth the decomposition swaps in (exact p_T draws, the exact score); targets with "
                f"exact marginals: {', '.join(exact_score_targets())}. Cells of other targets get no variant rows",
            )
    claims = data.get("claims", [])
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise ctx.fail("claims", "expected one or more [[claims]] tables")
    try:
        parsed = parse_claims(claims, path, suite_labels(data))
    except ClaimError as exc:
        raise SuiteError(str(exc)) from None
    for i, claim in enumerate(parsed):
        metric = built_metrics.get(claim.metric) if claim.source == "results" else None
        if metric is not None and not metric.time_resolved and (claim.x == "t" or "t_reduce" in claims[i]):
            key = "x" if claim.x == "t" else "t_reduce"
            resolved = [n for n in METRICS.names() if getattr(METRICS.factory(n), "time_resolved", False) is True]
            raise ctx.fail(f"claims[{i}].{key}", f"metric {claim.metric!r} has one row per cell and seed, no "
                           f"diffusion time (time-resolved metrics: {', '.join(resolved)}) (claim {claim.id!r})")
    return Suite(
        name=name, path=path, text=text, seed=seed, device=device, dtype=dtype, description=description,
        components=components, metrics=metrics, grids=grids, timeout=None if timeout is None else float(timeout),
        compile=compile_, claims=claims, decompose=decompose, decompose_steps=decompose_steps,
        ground_truth_targets=ground_truth,
        gradient_flow_samplers=frozenset(label for label, s in built["samplers"].items() if s.gradient_flow),
    )


def _build(
    ctx: _Ctx, key: str, registry: Registry, resolved: str, comp: str, params: dict[str, Any],
    shapes: dict[str, Any] | None = None, n_train: dict[str, int] | None = None, label: str = "",
) -> Any:
    """Check a component's memory where its parameters say it, build it, then check its parameters'
    numbers and types (after the build, so that a component's own message about a value comes first)."""
    defaults = _defaults(registry, resolved)
    if registry is TARGETS and shapes is not None:
        shape = shapes[label] = _target_shape(comp, params, defaults)
        if shape is not None:
            dim, k, matrices, skey = shape
            ctx.check_memory(f"{key}.{skey}", bytes_needed(dim, n_components=k, matrices=matrices),
                             f"target {label!r} (dim {dim}" + (f", {k} components" if k > 1 else "") + ")")
    if registry is ESTIMATORS and n_train is not None:
        rows = params.get("n_train", defaults.get("n_train"))
        if is_int_at_least(rows, 1):
            n_train[label] = rows
    try:
        allow = tuple(getattr(registry.factory(resolved), "nonfinite_params", ()))
    except (ValueError, TypeError):
        allow = ()
    try:
        obj = registry.build(resolved, **params)
    except ParameterError as exc:  # a declared constraint: name the parameter's key
        raise ctx.fail(f"{key}.{exc.param}" if exc.param in params else key, str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ctx.fail(key, str(exc)) from None
    except (Exception, SystemExit) as exc:  # a component's own crash, found here rather than in the run
        for pname, value in params.items():
            _check_numbers(ctx, f"{key}.{pname}", value, pname in allow)
        raise ctx.fail(key, f"building it raised {type(exc).__name__}: {exc}") from None
    for pname, value in params.items():
        _check_numbers(ctx, f"{key}.{pname}", value, pname in allow)
    _check_param_types(ctx, key, params, registry, resolved)
    return obj


def _check_grid_memory(
    ctx: _Ctx, where: str, grid: dict[str, Any], shapes: dict[str, Any], n_train: dict[str, int],
    metrics: dict[str, Any],
) -> None:
    """Refuse cells whose largest tensors (samples, training draws, covariances, time grid) cannot
    be allocated on this machine, before anything is drawn."""
    steps = max(grid["steps"])
    n = max(grid["n_samples"])
    cov = [m for m in grid["metrics"] if metrics[m].needs_covariance]
    learned = max(((n_train[e], e) for e in grid["estimators"] if e in n_train), default=(0, ""))
    for tl in grid["targets"]:
        shape = shapes.get(tl)
        dim, k, matrices, _ = shape if shape is not None else (1, 1, 0, "")  # unknown: counted as 1-D
        matrices = max(matrices, 1 if cov else 0)
        rows = max(n, learned[0])
        parts = {
            f"{where}.steps": bytes_needed(0, n_components=0, steps=steps),
            (f"{where}: estimators.{learned[1]}.n_train x targets.{tl}" if learned[0] > n
             else f"{where}: n_samples x targets.{tl}"): bytes_needed(dim, n_components=k, n_samples=rows),
            (f"{where}: metrics.{cov[0]} x targets.{tl}" if cov else f"targets.{tl}"):
                bytes_needed(dim, n_components=k, matrices=matrices),
        }
        what = (f"a cell of target {tl!r} (dim {dim if shape is not None else 'unknown, counted as 1'}"
                + (f", {k} components" if k > 1 else "")
                + f"; {rows} {'training samples' if learned[0] > n else 'samples'}; {steps} steps"
                + ("; a (dim, dim) covariance" if matrices else "") + ")")
        ctx.check_memory(max(parts, key=parts.__getitem__),
                         bytes_needed(dim, n_components=k, matrices=matrices, n_samples=rows, steps=steps), what)


def _check_compatibility(
    ctx: _Ctx, where: str, grid: dict[str, Any], built: dict[str, dict[str, Any]], metrics: dict[str, Any]
) -> None:
    """Reject crossings that cannot run, before anything runs."""
    if "exact" in grid["init"]:
        for sl in grid["samplers"]:
            if built["samplers"][sl].gradient_flow:
                raise ctx.fail(
                    f"{where}: init x samplers.{sl}",
                    f"samplers.{sl} is a gradient flow (a JKO scheme) that starts from its own initial law; "
                    "init = 'exact' (draws of p_T) applies to time-reversal samplers: give this sampler a grid "
                    "with init = 'prior'",
                )
        for tl in grid["targets"]:
            if not built["targets"][tl].has_marginals:
                raise ctx.fail(
                    f"{where}: init x targets.{tl}",
                    f"init = 'exact' draws from p_T, which target {built['targets'][tl].name!r} does not have in "
                    f"closed form; targets with exact marginals: {', '.join(exact_score_targets())}",
                )
    for tl in grid["targets"]:
        target = built["targets"][tl]
        for el in grid["estimators"]:
            est = built["estimators"][el]
            if est.needs_exact_target and not target.has_marginals:
                raise ctx.fail(f"{where}: estimators.{el} x targets.{tl}", exact_target_message(est.name, target.name))
        for mname in grid["metrics"]:
            metric = metrics[mname]
            if metric.needs_marginals and not target.has_marginals:
                raise ctx.fail(
                    f"{where}: metrics.{mname} x targets.{tl}",
                    f"metric {mname!r} needs the exact score, which target {target.name!r} does not have; "
                    f"targets with exact scores: {', '.join(exact_score_targets())}",
                )
            if metric.needs_moments:
                try:
                    target.moments()
                except NotImplementedError as exc:
                    raise ctx.fail(f"{where}: metrics.{mname} x targets.{tl}", str(exc)) from None
            if metric.needs_gaussian_target and target.gaussian_law() is None:
                raise ctx.fail(
                    f"{where}: metrics.{mname} x targets.{tl}",
                    f"exact-law metric {mname!r} needs a Gaussian target (gaussian, gaussian_unknown_mean)",
                )
            if metric.needs_mixture_target and target.mode_weights() is None:
                raise ctx.fail(
                    f"{where}: metrics.{mname} x targets.{tl}",
                    f"mode metric {mname!r} needs a mixture target with at least two modes (gmm); target "
                    f"{target.name!r} is not one",
                )
            if metric.needs_affine_sampler:
                for sl in grid["samplers"]:
                    if not built["samplers"][sl].affine:
                        raise ctx.fail(
                            f"{where}: metrics.{mname} x samplers.{sl}",
                            f"exact-law metric {mname!r} needs an affine sampler; samplers.{sl} is not "
                            "(pc needs a fixed step_size)",
                        )
            if metric.needs_affine_score:
                for el in grid["estimators"]:
                    if not built["estimators"][el].preserves_affinity:
                        raise ctx.fail(
                            f"{where}: metrics.{mname} x estimators.{el}",
                            f"exact-law metric {mname!r} needs an affine score: oracle, or noisy_oracle with "
                            "kind = 'bias'",
                        )
            if metric.max_samples is not None:
                too_big = [n for n in grid["n_samples"] if n > metric.max_samples]
                if too_big:
                    raise ctx.fail(
                        f"{where}: metrics.{mname} x n_samples",
                        f"metric {mname!r} is capped at {metric.max_samples} samples, the grid asks for "
                        f"{too_big[0]}; use {' or '.join(metric.alternatives) or 'a smaller n_samples'}",
                    )
