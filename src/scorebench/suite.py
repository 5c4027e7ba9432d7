"""Suite files: parse, validate before anything runs, and expand into cells.

A suite is a TOML file::

    [suite]
    name = "smoke"          # required: letters, digits, '-', '_'
    seed = 0                # suite seed: every generator derives from (seed, cell)
    device = "auto"         # auto | cpu | cuda | cuda:N
    dtype = "float32"       # float32 | float64

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

Every mistake raises one :class:`SuiteError` naming the file, the key path and what is
allowed.  Incompatible choices (an oracle estimator or a score metric on a target without
exact scores, an exact-law metric on a non-affine sampler, a capped metric above its cap)
are errors too, found before any cell runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .estimators import ESTIMATORS
from .metrics import METRICS
from .plugins import PluginError, is_spec, resolve_spec
from .processes import GRID_KINDS, PROCESSES
from .registry import Registry
from .samplers import SAMPLERS
from .targets import TARGETS
from .targets.mixture import GaussianMixture
from .validation import is_int_at_least

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
TOP_KEYS = ("suite", *SECTIONS, "metrics", "grid")
SUITE_KEYS = ("name", "description", "seed", "device", "dtype")
GRID_KEYS = ("targets", "processes", "estimators", "samplers", "steps", "n_samples", "seeds", "time_grid", "init",
             "metrics")
#: where a chain starts: the sampler's own initial law, or exact draws of p_T
INITS = ("prior", "exact")
DTYPES = ("float32", "float64")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


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


@dataclass
class Suite:
    """A validated suite."""

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

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def spec(self, section: str, label: str) -> ComponentSpec:
        return self.components[section][label]

    def build(self, section: str, label: str) -> Any:
        spec = self.spec(section, label)
        return SECTIONS[section].build(spec.resolved or spec.name, **spec.params)

    def build_metric(self, name: str) -> Any:
        return METRICS.build(name, **self.metrics[name])

    def cells(self) -> list[Cell]:
        """Every cell of every grid, in file order, without duplicates."""
        out: dict[str, Cell] = {}
        for g in self.grids:
            for tl, pl, el, sl, steps, n, kind, init in itertools.product(
                g["targets"], g["processes"], g["estimators"], g["samplers"], g["steps"], g["n_samples"],
                g["time_grid"], g["init"],
            ):
                key = {
                    "target": self.spec("targets", tl).as_dict(),
                    "process": self.spec("processes", pl).as_dict(),
                    "estimator": self.spec("estimators", el).as_dict(),
                    "sampler": self.spec("samplers", sl).as_dict(),
                    "labels": [tl, pl, el, sl],
                    "steps": steps,
                    "n_samples": n,
                    "time_grid": kind,
                }
                if init != "prior":  # prior-start cells keep the ids they had before init existed
                    key["init"] = init
                cell_id = stable_hash(key)[:16]
                if cell_id in out:
                    merged = tuple(dict.fromkeys(out[cell_id].metrics + tuple(g["metrics"])))
                    out[cell_id] = replace(out[cell_id], metrics=merged)
                else:
                    out[cell_id] = Cell(tl, pl, el, sl, steps, n, kind, tuple(g["metrics"]), cell_id, init)
        return list(out.values())

    def seeds_of(self, cell: Cell) -> list[int]:
        seeds: list[int] = []
        for g in self.grids:
            if (cell.target in g["targets"] and cell.process in g["processes"] and cell.estimator in g["estimators"]
                    and cell.sampler in g["samplers"] and cell.steps in g["steps"]
                    and cell.n_samples in g["n_samples"] and cell.time_grid in g["time_grid"]
                    and cell.init in g["init"]):
                seeds.extend(s for s in g["seeds"] if s not in seeds)
        return seeds

    def quick(self) -> Suite:
        """The smallest step count and sample size of each grid, at most two seeds."""
        grids = [
            {**g, "steps": [min(g["steps"])], "n_samples": [min(g["n_samples"])], "seeds": g["seeds"][:2]}
            for g in self.grids
        ]
        return replace(self, grids=grids)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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

    def fail(self, key: str, problem: str) -> SuiteError:
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        return SuiteError(where + problem)


def _allowed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _check_keys(ctx: _Ctx, table: dict, allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.fail(f"{where}.{key}" if where else key, f"unknown key; allowed: {_allowed(allowed)}")


def _int_list(ctx: _Ctx, value: Any, key: str, minimum: int) -> list[int]:
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise ctx.fail(key, "empty list; give at least one value")
    for v in value:
        if not is_int_at_least(v, minimum):
            raise ctx.fail(key, f"expected integers >= {minimum}, got {v!r}")
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
    for v in value:
        if v not in defined:
            raise ctx.fail(key, f"unknown label {v!r}; defined: {_allowed(defined)}")
    return list(dict.fromkeys(value))


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raise :class:`SuiteError` on the first problem."""
    path = Path(path)
    ctx = _Ctx(path)
    if not path.is_file():
        raise ctx.fail("", "suite file not found")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.fail("", f"invalid TOML: {exc}") from None
    return parse_suite(data, path, text)


def parse_suite(data: dict[str, Any], path: Path, text: str = "") -> Suite:
    ctx = _Ctx(path)
    _check_keys(ctx, data, TOP_KEYS, "")
    for required in ("suite", *SECTIONS, "grid"):
        if required not in data:
            raise ctx.fail(required, f"missing section [{required}]" if required != "grid" else "missing [[grid]]")

    head = data["suite"]
    if not isinstance(head, dict):
        raise ctx.fail("suite", "expected a table [suite]")
    _check_keys(ctx, head, SUITE_KEYS, "suite")
    name = head.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ctx.fail("suite.name", f"expected a name of letters, digits, '-' or '_', got {name!r}")
    seed = head.get("seed", 0)
    if not is_int_at_least(seed, 0):
        raise ctx.fail("suite.seed", f"expected a non-negative integer, got {seed!r}")
    device = head.get("device", "auto")
    if not isinstance(device, str) or not DEVICE_RE.match(device):
        raise ctx.fail("suite.device", f"got {device!r}; allowed: auto, cpu, cuda, cuda:N")
    dtype = head.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ctx.fail("suite.dtype", f"got {dtype!r}; allowed: {_allowed(DTYPES)}")
    description = head.get("description", "")
    if not isinstance(description, str):
        raise ctx.fail("suite.description", "expected a string")

    components: dict[str, dict[str, ComponentSpec]] = {}
    built: dict[str, dict[str, Any]] = {}
    for section, registry in SECTIONS.items():
        table = data[section]
        if not isinstance(table, dict) or not table:
            raise ctx.fail(section, f"expected at least one [{section}.<label>] table")
        components[section], built[section] = {}, {}
        for label, body in table.items():
            key = f"{section}.{label}"
            if not NAME_RE.match(label):
                raise ctx.fail(key, "labels may contain letters, digits, '-' and '_' only")
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
            elif comp not in registry:
                raise ctx.fail(
                    f"{key}.name", f"unknown {registry.kind} {comp!r}; allowed: {_allowed(registry.names())} "
                    "(or 'package.module:Name', 'path/to/file.py:Name')"
                )
            try:
                built[section][label] = registry.build(resolved, **params)
            except (ValueError, TypeError) as exc:
                raise ctx.fail(key, str(exc)) from None
            components[section][label] = ComponentSpec(label, comp, params, resolved)

    metrics_table = data.get("metrics", {})
    if isinstance(metrics_table, list):
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
        try:
            built_metrics[mname] = METRICS.build(mname, **params)
        except (ValueError, TypeError) as exc:
            raise ctx.fail(key, str(exc)) from None
        metrics[mname] = dict(params)

    grids_raw = data["grid"]
    if isinstance(grids_raw, dict):
        grids_raw = [grids_raw]
    if not isinstance(grids_raw, list) or not grids_raw:
        raise ctx.fail("grid", "expected one or more [[grid]] tables")
    grids = []
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
        grid["seeds"] = _int_list(ctx, g.get("seeds", [0]), f"{where}.seeds", 0)
        grid["time_grid"] = _choice_list(ctx, g.get("time_grid", "uniform"), f"{where}.time_grid", GRID_KINDS,
                                         "time grid")
        grid["init"] = _choice_list(ctx, g.get("init", "prior"), f"{where}.init", INITS, "start")
        grid["metrics"] = _label_list(ctx, g.get("metrics"), f"{where}.metrics", list(metrics))
        _check_compatibility(ctx, where, grid, built, built_metrics)
        grids.append(grid)

    return Suite(
        name=name, path=path, text=text, seed=seed, device=device, dtype=dtype, description=description,
        components=components, metrics=metrics, grids=grids,
    )


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
                    "closed form; targets with exact marginals: gaussian, gaussian_unknown_mean, gmm",
                )
    for tl in grid["targets"]:
        target = built["targets"][tl]
        for el in grid["estimators"]:
            est = built["estimators"][el]
            if est.name in ("oracle", "noisy_oracle") and not target.has_marginals:
                raise ctx.fail(
                    f"{where}: estimators.{el} x targets.{tl}",
                    f"estimator {est.name!r} needs exact scores, which target {target.name!r} does not have; "
                    "targets with exact scores: gaussian, gaussian_unknown_mean, gmm",
                )
        for mname in grid["metrics"]:
            metric = metrics[mname]
            if metric.kind in ("score", "trajectory", "exact") and not target.has_marginals:
                raise ctx.fail(
                    f"{where}: metrics.{mname} x targets.{tl}",
                    f"metric {mname!r} needs the exact score, which target {target.name!r} does not have; "
                    "use it with gaussian, gaussian_unknown_mean or gmm",
                )
            if metric.kind == "moment":
                try:
                    target.moments()
                except NotImplementedError as exc:
                    raise ctx.fail(f"{where}: metrics.{mname} x targets.{tl}", str(exc)) from None
            if metric.kind == "exact":
                if not (isinstance(target, GaussianMixture) and target.n_components == 1):
                    raise ctx.fail(
                        f"{where}: metrics.{mname} x targets.{tl}",
                        f"exact-law metric {mname!r} needs a Gaussian target (gaussian, gaussian_unknown_mean)",
                    )
                for sl in grid["samplers"]:
                    if not built["samplers"][sl].affine:
                        raise ctx.fail(
                            f"{where}: metrics.{mname} x samplers.{sl}",
                            f"exact-law metric {mname!r} needs an affine sampler; samplers.{sl} is not "
                            "(pc needs a fixed step_size)",
                        )
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
