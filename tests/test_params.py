"""Declared parameters (:mod:`scorebench.params`): every built-in component declares each
constructor parameter once; a wrong value is refused with one uniform message, by direct
construction and through a suite file (``python -m scorebench.cli validate``);
``describe``/``repr``/``get_params`` follow the declaration."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from scorebench.estimators import ESTIMATORS
from scorebench.estimators.lipschitz import Lipschitz
from scorebench.estimators.mlp_dsm import MLPDSM
from scorebench.metrics import METRICS
from scorebench.metrics.base import Metric
from scorebench.params import (
    Array,
    Boolean,
    Check,
    Interval,
    NoneMeans,
    Options,
    ParameterError,
    Parameterised,
    String,
    allowed,
    check_value,
)
from scorebench.processes import PROCESSES
from scorebench.samplers import SAMPLERS
from scorebench.targets import TARGETS
from scorebench.targets.base import Target

REGISTRIES = {"targets": TARGETS, "processes": PROCESSES, "estimators": ESTIMATORS, "samplers": SAMPLERS,
              "metrics": METRICS}


def _builtins() -> list[tuple[str, str, type]]:
    """(section, name, class) of every built-in component."""
    out = []
    for section, reg in REGISTRIES.items():
        for name in reg.names():
            cls = reg.factory(name)
            if not cls.__module__.startswith("scorebench."):
                continue
            out.append((section, name, cls))
    return out


BUILTINS = _builtins()
IDS = [f"{s}.{n}" for s, n, _ in BUILTINS]


def _init_params(cls: type) -> set[str]:
    return {p.name for p in inspect.signature(cls).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def test_every_builtin_is_found() -> None:
    names = {n for _, n, _ in BUILTINS}
    assert {"pc", "ddpm", "vp", "ve", "gmm", "gaussian", "noisy_oracle", "ntk", "sinkhorn", "mmd"} <= names
    assert len(BUILTINS) >= 35


@pytest.mark.parametrize(("section", "name", "cls"), BUILTINS, ids=IDS)
def test_declares_exactly_the_constructor_parameters(section: str, name: str, cls: type) -> None:
    assert issubclass(cls, Parameterised)
    assert set(cls.param_constraints) == _init_params(cls), name
    for key, spec in cls.param_constraints.items():
        for c in spec if isinstance(spec, list) else [spec]:
            assert c is None or hasattr(c, "accepts"), (name, key)


#: parameters that select a variant of a component with test parameters of its own
VARIANTS: dict[str, list[dict[str, Any]]] = {"lipschitz": [{"family": "affine"}, {"family": "network"}]}


def check_declaration(cls: type) -> list[dict[str, Any]]:
    """Check that every default value and the test parameters of every variant of ``cls`` satisfy its
    declaration and build it; return the parameters built (test parameters, variant on top)."""
    name = cls.component_name()
    sig = inspect.signature(cls).parameters
    for key, spec in cls.param_constraints.items():
        default = sig[key].default
        if default is not inspect.Parameter.empty:
            check_value(name, key, spec, default)
    built = []
    for variant in VARIANTS.get(name, [{}]):
        small = cls.test_params_for(variant)
        assert set(small) <= set(cls.param_constraints), f"{name}: undeclared test parameters {set(small)}"
        cls.validate_params(small)
        params = {**small, **variant}
        assert isinstance(cls(**params), cls)
        built.append(params)
    return built


@pytest.mark.parametrize(("section", "name", "cls"), BUILTINS, ids=IDS)
def test_defaults_and_test_params_satisfy_the_declaration(section: str, name: str, cls: type) -> None:
    """Every default value and the ``test_params`` of every variant are allowed, and the component
    builds through its registry with them."""
    assert cls.test_params_for({}) == cls.test_params  # the default variant's are the class's
    for params in check_declaration(cls):
        assert isinstance(REGISTRIES[section].build(name, **params), cls)


def test_a_wrong_test_params_declaration_is_refused() -> None:
    """The check above fails on test parameters outside the declaration, of any variant."""

    class TooFew(MLPDSM):
        test_params: ClassVar[dict] = {**MLPDSM.test_params, "iterations": 0}

    class Misspelt(MLPDSM):
        test_params: ClassVar[dict] = {"iteration": 10}

    class WrongNetwork(Lipschitz):
        @classmethod
        def test_params_for(cls, params: dict[str, Any] | None = None) -> dict[str, Any]:
            small = super().test_params_for(params)
            return {**small, "n_train": 0} if (params or {}).get("family") == "network" else small

    assert check_declaration(MLPDSM) and check_declaration(Lipschitz)  # the declarations they alter pass
    with pytest.raises(ParameterError, match=r"^mlp_dsm: iterations must be an integer in \[1, inf\), got 0$"):
        check_declaration(TooFew)
    with pytest.raises(AssertionError, match="undeclared test parameters"):
        check_declaration(Misspelt)
    with pytest.raises(ParameterError, match=r"^lipschitz: n_train must be an integer in \[1, inf\), got 0$"):
        check_declaration(WrongNetwork)


@pytest.mark.parametrize(("section", "name", "cls"), BUILTINS, ids=IDS)
def test_describe_repr_and_get_params_follow_the_declaration(section: str, name: str, cls: type) -> None:
    obj = REGISTRIES[section].build(name, **cls.test_params)
    params = obj.get_params()
    assert list(params) == [k for k in cls.param_constraints if k not in cls.hidden_params]
    for key, value in cls.test_params.items():
        if not isinstance(value, list):
            assert params[key] == value, key
    # rebuilding from get_params gives the same component
    assert type(obj)(**params).describe() == obj.describe()
    desc = obj.describe()
    assert desc["name"] == name
    if isinstance(obj, Metric):
        assert desc == {"name": name, "version": obj.version, **params}
    elif isinstance(obj, Target):
        if type(obj).describe is Target.describe:
            assert desc == {"name": name, "dim": obj.dim, **params}
    elif type(obj).describe is Parameterised.describe:
        assert desc == {"name": name, **params}
    if not isinstance(obj, Target):
        assert repr(obj) == f"{cls.__name__}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"


def test_registry_params_still_report_defaults_and_the_allowed_values() -> None:
    info = {p.name: p for p in SAMPLERS.params("pc")}
    assert {k: p.default for k, p in info.items()} == {
        "snr": 0.16, "corrector_steps": 1, "step_size": None, "noise_removal": False,
    }
    assert info["snr"].allowed == "a number in (0, inf)"
    assert info["step_size"].allowed == "a number in (0, inf) or None"
    assert {p.name: p.default for p in PROCESSES.params("ou")} == {"T": 5.0, "t_min": 1e-3}


# -- the constraint kinds ------------------------------------------------------------------------

def test_interval_bounds_and_types() -> None:
    open_ = Interval(float, 0, 1, closed="neither")
    assert open_.accepts(0.5) and not open_.accepts(0.0) and not open_.accepts(1.0)
    closed = Interval(float, 0, 1)
    assert closed.accepts(0) and closed.accepts(1.0) and not closed.accepts(1.5)
    assert Interval(float, 0, 1, closed="left").accepts(0.0) and not Interval(float, 0, 1, closed="left").accepts(1)
    assert Interval(float, 0, 1, closed="right").accepts(1) and not Interval(float, 0, 1, closed="right").accepts(0)
    for bad in (True, "0.5", math.nan, math.inf, None, [0.5]):
        assert not Interval(float, None, None).accepts(bad), bad
    count = Interval(int, 1, None)
    assert count.accepts(1) and not count.accepts(0) and not count.accepts(1.0) and not count.accepts(True)
    assert Interval(float, 0, None).convert(1) == 1.0 and isinstance(Interval(float, 0, None).convert(1), float)
    assert isinstance(Interval(float, 0, None, cast=False).convert(1), int)
    assert str(count) == "an integer in [1, inf)"
    assert str(open_) == "a number in (0, 1)"
    assert str(Interval(int, None, None)) == "an integer"


def test_a_reason_follows_its_constraint_in_messages_only() -> None:
    invertible = Interval(float, 0, 1, closed="neither", why="invertibility")
    assert str(invertible) == "a number in (0, 1)"  # the description itself is unchanged
    assert allowed(invertible) == "a number in (0, 1) (invertibility)"
    assert allowed(Interval(float, 0, 1, closed="neither")) == "a number in (0, 1)"  # no reason, none shown
    with pytest.raises(ParameterError, match=r"^f: lipschitz must be a number in \(0, 1\) \(invertibility\), got 1.5$"):
        check_value("f", "lipschitz", invertible, 1.5)
    automatic = [Interval(float, 0, None, closed="neither"), NoneMeans("automatic")]
    assert allowed(automatic) == "a number in (0, inf) or None (automatic)"
    assert check_value("f", "lr", automatic, None) is None and check_value("f", "lr", automatic, 2) == 2.0
    assert NoneMeans("automatic").accepts(None) and not NoneMeans("automatic").accepts(0)
    with pytest.raises(ParameterError, match=r"or None \(automatic\), got 0.0$"):
        check_value("f", "lr", automatic, 0.0)


def test_other_constraints() -> None:
    opts = Options(("a", "b"))
    assert opts.accepts("a") and not opts.accepts("c") and not opts.accepts(["a"])
    assert str(opts) == "one of 'a', 'b'"
    assert Boolean().accepts(False) and not Boolean().accepts(0) and not Boolean().accepts("false")
    assert String().accepts("x") and not String().accepts(1)
    assert Array().accepts([[1.0, 2.0]]) and Array().accepts(3) and not Array().accepts([1.0, math.nan])
    assert not Array().accepts(["a"]) and not Array().accepts([[1.0], [1.0, 2.0]]) and not Array().accepts(True)
    even = Check(lambda v: isinstance(v, int) and v % 2 == 0, "an even integer")
    assert even.accepts(2) and not even.accepts(3)
    assert allowed([Interval(int, 0, None), None]) == "an integer in [0, inf) or None"
    with pytest.raises(ParameterError, match=r"^x: y must be an even integer, got 3$") as info:
        check_value("x", "y", even, 3)
    assert info.value.component == "x" and info.value.param == "y"


# (section, name, parameter, wrong value, the uniform message)
WRONG: list[tuple[str, str, str, Any, str]] = [
    ("samplers", "pc", "corrector_steps", -1, "pc: corrector_steps must be an integer in [0, inf), got -1"),
    ("samplers", "pc", "snr", -1.0, "pc: snr must be a number in (0, inf), got -1.0"),
    ("samplers", "pc", "step_size", 0.0, "pc: step_size must be a number in (0, inf) or None, got 0.0"),
    ("samplers", "jko_particle", "damping", 1.5,
     "jko_particle: damping must be a number in (0, 1] or None (automatic), got 1.5"),
    ("samplers", "ddpm", "variance", "exact", "ddpm: variance must be one of 'posterior', 'upper', got 'exact'"),
    ("samplers", "euler_maruyama", "noise_removal", "false",
     "euler_maruyama: noise_removal must be true or false, got 'false'"),
    ("targets", "gaussian", "mean", ["a", "b"],
     "gaussian: mean must be a number or a nested list of finite numbers or None, got ['a', 'b']"),
    ("targets", "funnel", "dim", 1, "funnel: dim must be an integer in [2, inf), got 1"),
    ("estimators", "ntk", "width", 3, "ntk: width must be an even integer >= 2 (neurons come in pairs), got 3"),
    ("estimators", "mlp_dsm", "ema", 1.0, "mlp_dsm: ema must be a number in [0, 1) (0 turns it off), got 1.0"),
    ("processes", "vp", "T", "1.0", "vp: T must be a number in (0, inf), got '1.0'"),
    ("processes", "vp", "beta_max", 0.05, "vp: beta_max must be >= beta_min = 0.1, got 0.05"),  # a cross rule
    ("processes", "ve", "t_min", 2.0, "ve: t_min must be below T = 1.0, got 2.0"),  # a cross rule
    ("metrics", "sinkhorn", "max_iterations", 0, "sinkhorn: max_iterations must be an integer in [1, inf), got 0"),
    ("metrics", "sinkhorn", "scaling", 0.5, "sinkhorn: scaling must be omitted (it is no longer a parameter"),
]
WRONG_IDS = [f"{s}.{n}.{p}" for s, n, p, _, _ in WRONG]


@pytest.mark.parametrize(("section", "name", "param", "value", "message"), WRONG, ids=WRONG_IDS)
def test_a_wrong_value_is_refused_on_direct_construction(section: str, name: str, param: str, value: Any,
                                                         message: str) -> None:
    cls = REGISTRIES[section].factory(name)
    with pytest.raises(ParameterError) as info:
        cls(**{param: value})
    assert str(info.value).startswith(message)
    assert info.value.param == param
    with pytest.raises(ValueError) as info:  # the registry says the same before constructing
        REGISTRIES[section].build(name, **{param: value})
    assert str(info.value).startswith(message)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _suite(section: str, name: str, param: str, value: Any) -> str:
    parts = {
        "targets": '[targets.t]\nname = "gaussian"\n',
        "processes": "[processes.p]\nname = \"vp\"\n",
        "estimators": "[estimators.e]\nname = \"oracle\"\n",
        "samplers": "[samplers.s]\nname = \"euler_maruyama\"\n",
        "metrics": "[metrics]\nmean_error = {}\n",
    }
    label = {"targets": "t", "processes": "p", "estimators": "e", "samplers": "s"}.get(section)
    if section == "metrics":
        parts["metrics"] = f"[metrics]\n{name} = {{ {param} = {_toml(value)} }}\n"
    else:
        parts[section] = f'[{section}.{label}]\nname = "{name}"\n{param} = {_toml(value)}\n'
    grid = "\n[[grid]]\nsteps = [2]\nn_samples = [16]\nseeds = [0]\n"
    return '[suite]\nname = "wrong"\n\n' + "\n".join(parts.values()) + grid


@pytest.mark.parametrize(("section", "name", "param", "value", "message"), WRONG, ids=WRONG_IDS)
def test_a_wrong_value_is_refused_through_scorebench_validate(tmp_path: Path, section: str, name: str, param: str,
                                                              value: Any, message: str) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(_suite(section, name, param, value))
    proc = subprocess.run([sys.executable, "-m", "scorebench.cli", "validate", str(path), "--no-estimate"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    key = f"metrics.{name}.{param}" if section == "metrics" else \
        f"{section}.{ {'targets': 't', 'processes': 'p', 'estimators': 'e', 'samplers': 's'}[section]}.{param}"
    assert f"{path}: {key}: {message}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_same_suite_with_a_right_value_validates(tmp_path: Path) -> None:
    """The subprocess check above can fail: the suite it writes validates once the value is right."""
    path = tmp_path / "right.toml"
    path.write_text(_suite("samplers", "pc", "snr", 0.2))
    proc = subprocess.run([sys.executable, "-m", "scorebench.cli", "validate", str(path), "--no-estimate"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_undeclared_plugin_parameters_keep_the_annotation_check() -> None:
    """A component without declarations is not validated by the registry (its own code decides)."""

    class Loose(Parameterised):
        def __init__(self, x: int = 1) -> None:
            self.x = x

    assert Loose.validate_params({"x": "anything"}) == {"x": "anything"}
    assert Loose().get_params() == {}


# -- the reasons restored to messages ------------------------------------------------------------

# (section, name, parameter, wrong value, the reason the message gives)
HINTS: list[tuple[str, str, str, Any, str]] = [
    ("samplers", "jko_flow", "lipschitz", 1.0, "invertibility"),
    ("samplers", "jko_flow", "depth", 0, "hidden layers"),
    ("samplers", "jko_flow", "growth", 0.0, "the grid's spacings"),
    ("samplers", "jko_flow", "n_train", 1, "the particles"),
    ("samplers", "jko_flow", "batch_size", 0, "full batch"),
    ("samplers", "jko_flow", "horizon", 0.0, "total JKO flow time"),
    ("samplers", "jko_exact_gaussian", "horizon", -1.0, "the time grid's own spacings"),
    ("samplers", "jko_particle", "damping", 0.0, "automatic"),
    ("estimators", "mlp_dsm", "ema", 1.0, "0 turns it off"),
    ("estimators", "mlp_dsm", "val_fraction", 1.0, "0 turns it off"),
    ("estimators", "ntk", "lr", 0.0, "automatic"),
    ("estimators", "ntk_kernel", "sigma_xi", -1.0, "estimated"),
    ("estimators", "ntk", "rkhs_norm", 0.0, "estimated"),
    ("estimators", "ntk", "t_min", -1.0, "the process's"),
    ("estimators", "ntk_kernel", "radius", 0.0, "no truncation"),
    ("metrics", "mmd", "bandwidth", 0.0, "median heuristic"),
]


@pytest.mark.parametrize(("section", "name", "param", "value", "hint"), HINTS,
                         ids=[f"{n}.{p}" for _, n, p, _, _ in HINTS])
def test_a_refusal_gives_the_reason_of_the_constraint(section: str, name: str, param: str, value: Any,
                                                     hint: str) -> None:
    with pytest.raises(ParameterError) as info:
        REGISTRIES[section].build(name, **{param: value})
    message = str(info.value)
    assert message.startswith(f"{name}: {param} must be ") and message.endswith(f", got {value!r}")
    assert f"({hint})" in message
    assert f"({hint})" in {p.name: p.allowed for p in REGISTRIES[section].params(name)}[param]


#: ``describe()`` of components whose constraints gained reasons, as recorded before they had them
DESCRIBED_BEFORE: dict[tuple[str, str], dict[str, Any]] = {
    ("samplers", "jko_particle"): {"name": "jko_particle", "iterations": 50, "damping": None, "bandwidth": None,
                                   "horizon": 10.0, "debias": True},
    ("samplers", "jko_exact_gaussian"): {"name": "jko_exact_gaussian", "horizon": 10.0},
    ("estimators", "mlp_dsm"): {
        "name": "mlp_dsm", "width": 128, "depth": 3, "lr": 0.001, "iterations": 5000, "batch_size": 256,
        "n_train": 10000, "weighting": "noise", "parametrization": "noise", "ema": 0.0, "seconds": None,
        "val_fraction": 0.0, "patience": 10, "activation": "silu",  # (activation came later, at its default)
    },
    ("estimators", "ntk_kernel"): {
        "name": "ntk_kernel", "n_train": 1000, "iterations": 2000, "seconds": None, "lr": None, "stopping": "rule",
        "val_fraction": 0.2, "sigma_xi": None, "rkhs_norm": None, "t_min": None, "radius": None, "log_points": 100,
        "max_n": 8000,
    },
    ("metrics", "mmd"): {"name": "mmd", "version": "1", "bandwidth": None},
}


@pytest.mark.parametrize(("section", "name"), list(DESCRIBED_BEFORE), ids=[n for _, n in DESCRIBED_BEFORE])
def test_reasons_leave_describe_unchanged(section: str, name: str) -> None:
    assert REGISTRIES[section].build(name).describe() == DESCRIBED_BEFORE[section, name]
