"""Declared constructor parameters: each component states its parameters and their constraints once.

In the style of scikit-learn's ``_parameter_constraints``, a component class lists every
constructor parameter in :attr:`Parameterised.param_constraints`, mapping its name to the
values it allows: one constraint or a list of alternatives (``None`` in the list allows
``None``).  :meth:`Parameterised.validate_params` checks given values against the declaration
and returns them converted (a ``float`` interval stores ``float(value)``); the constructor calls
it through :meth:`Parameterised.set_params_from`, and :meth:`scorebench.registry.Registry.build`
calls it before construction, so a suite file and a direct call get the same message:

    pc: snr must be a number in (0, inf), got -1.0

that is ``<component>: <parameter> must be <allowed>, got <value>``, raised as a
:class:`ParameterError` (a :class:`ValueError` that also names the parameter).  A constraint may
carry the reason for its bounds, which follows its description in the message
(``Interval(float, 0, 1, closed="neither", why="invertibility")`` reads ``a number in (0, 1)
(invertibility)``), and :class:`NoneMeans` says what ``None`` stands for (``or None (automatic)``).
:meth:`~Parameterised.get_params`, :meth:`~Parameterised.describe` and ``repr`` derive from the
declaration.  Rules between parameters that no single constraint expresses stay in the
constructor and raise :func:`param_error` with the same wording.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

__all__ = [
    "Array", "Boolean", "Check", "Constraint", "Interval", "NoneMeans", "Options", "ParameterError",
    "Parameterised", "String", "allowed", "check_value", "param_error",
]


class ParameterError(ValueError):
    """A constructor parameter outside its declared constraints.

    Parameters
    ----------
    component:
        Registered name of the component (``"pc"``).
    param:
        The parameter (``"snr"``).
    problem:
        What is wrong, e.g. ``"must be a number in (0, inf), got -1.0"``.
    """

    def __init__(self, component: str, param: str, problem: str) -> None:
        super().__init__(f"{component}: {param} {problem}")
        self.component = component
        self.param = param
        self.problem = problem


def param_error(component: str, param: str, allowed_text: str, value: Any) -> ParameterError:
    """The uniform error ``<component>: <param> must be <allowed_text>, got <value!r>``."""
    return ParameterError(component, param, f"must be {allowed_text}, got {value!r}")


class Constraint(ABC):
    """The values one parameter allows; ``str(constraint)`` says which, after "must be".

    ``why``, where a subclass sets it, is the reason for the constraint or the meaning of a value
    (``"invertibility"``, ``"0 turns it off"``): messages and :func:`allowed` put it in
    parentheses after the description; ``str(constraint)`` leaves it out.
    """

    why: str | None = None

    @abstractmethod
    def accepts(self, value: Any) -> bool:
        """Whether ``value`` satisfies the constraint."""

    def convert(self, value: Any) -> Any:
        """The value a constructor stores for an accepted ``value`` (unchanged by default)."""
        return value

    @abstractmethod
    def __str__(self) -> str:
        """Allowed values, phrased to follow "must be"."""


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Interval(Constraint):
    """A number of type ``int`` or ``float`` between ``low`` and ``high`` (``None``: unbounded).

    Parameters
    ----------
    kind:
        ``int`` (a Python integer, not a bool; stored unchanged) or ``float`` (an int or
        float, not a bool, finite; stored as ``float``).
    low, high:
        Bounds; ``None`` for none.
    closed:
        Which bounds belong to the interval: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``.
    cast:
        For ``float``: store ``float(value)`` (default) or the value as given.
    why:
        Optional reason for the bounds, shown in messages (``"invertibility"``).
    """

    def __init__(
        self, kind: type, low: float | None, high: float | None, closed: str = "both", cast: bool = True,
        why: str | None = None,
    ) -> None:
        if kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"Interval closed must be both, left, right or neither, got {closed!r}")
        self.kind, self.low, self.high, self.closed, self.cast = kind, low, high, closed, cast
        self.why = why

    def accepts(self, value: Any) -> bool:
        if self.kind is int:
            if not isinstance(value, int) or isinstance(value, bool):
                return False
        elif not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.low is not None and (value < self.low if left_closed else value <= self.low):
            return False
        return not (self.high is not None and (value > self.high if right_closed else value >= self.high))

    def convert(self, value: Any) -> Any:
        return float(value) if self.kind is float and self.cast else value

    def __str__(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is None and self.high is None:
            return what if self.kind is int else "a finite number"
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{what} in {left}{lo}, {hi}{right}"


class Options(Constraint):
    """One of a fixed set of values (strings, in file order)."""

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = tuple(options)

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(o) and value == o for o in self.options)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


class Boolean(Constraint):
    """``True`` or ``False`` (not 0, 1 or a string)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


class NoneMeans(Constraint):
    """``None``, standing for what ``why`` says (``NoneMeans("automatic")`` reads ``None (automatic)``);
    a plain ``None`` among a parameter's alternatives allows ``None`` without saying what it means."""

    def __init__(self, why: str) -> None:
        self.why = why

    def accepts(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class String(Constraint):
    """Any string."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def __str__(self) -> str:
        return "a string"


class Array(Constraint):
    """A number, a (nested) list of numbers or a tensor with finite entries; shapes are the
    component's own check."""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool | str):
            return False
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return False
        return bool(torch.isfinite(t).all())

    def __str__(self) -> str:
        return "a number or a nested list of finite numbers"


class Check(Constraint):
    """An escape hatch: ``predicate(value)`` decides, ``description`` says what it allows."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def accepts(self, value: Any) -> bool:
        return bool(self.predicate(value))

    def __str__(self) -> str:
        return self.description


ConstraintSpec = Constraint | None | list[Constraint | None]


def _alternatives(spec: ConstraintSpec) -> list[Constraint | None]:
    return list(spec) if isinstance(spec, list) else [spec]


def _phrase(constraint: Constraint | None) -> str:
    if constraint is None:
        return "None"
    why = getattr(constraint, "why", None)
    return str(constraint) if why is None else f"{constraint} ({why})"


def allowed(spec: ConstraintSpec) -> str:
    """What ``spec`` allows, phrased to follow "must be", each alternative with its reason where it
    has one (``"a number in (0, 1] or None"``, ``"a number in (0, inf) or None (automatic)"``)."""
    return " or ".join(_phrase(c) for c in _alternatives(spec))


def check_value(component: str, name: str, spec: ConstraintSpec, value: Any) -> Any:
    """``value`` converted by the first alternative of ``spec`` that accepts it, or a
    :class:`ParameterError` saying what is allowed."""
    for c in _alternatives(spec):
        if c is None:
            if value is None:
                return None
        elif c.accepts(value):
            return c.convert(value)
    raise param_error(component, name, allowed(spec), value)


class Parameterised:
    """Declared parameters for a component class (mixed into every component base class).

    A subclass sets :attr:`param_constraints` to ``{parameter: constraint}`` for every
    constructor parameter, in the order :meth:`describe` lists them, and calls
    :meth:`set_params_from` in its constructor.
    """

    registered_name: ClassVar[str] = ""
    #: every constructor parameter and the values it allows
    param_constraints: ClassVar[dict[str, ConstraintSpec]] = {}
    #: attributes that hold a parameter under another name (``{"predictor": "predictor_name"}``)
    param_attributes: ClassVar[dict[str, str]] = {}
    #: declared parameters that are accepted only to be refused with an explanation (a removed
    #: parameter): not listed by :meth:`get_params`, :meth:`describe` or ``repr``
    hidden_params: ClassVar[tuple[str, ...]] = ()
    #: small parameters at which the component is known to run correctly and fast: the conformance
    #: tests and the benchmarks build it with them, and ``--quick`` caps an estimator's training
    #: budget at them (:attr:`~scorebench.estimators.Estimator.budget_params`); read them through
    #: :meth:`test_params_for`
    test_params: ClassVar[dict[str, Any]] = {}

    @classmethod
    def component_name(cls) -> str:
        """The name messages use: the registered name, else the class name in lower case."""
        return cls.__dict__.get("registered_name") or cls.registered_name or cls.__name__.lower()

    @classmethod
    def test_params_for(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The test parameters of the variant of the component that ``params`` select (a new dict).

        A component has one variant unless a parameter selects between variants with sizes of
        their own (``lipschitz``'s ``family``); this default returns :attr:`test_params` whatever
        ``params`` say, and such a component overrides it.  The component under test is
        ``cls(**{**cls.test_params_for(params), **params})``: given parameters win.
        """
        return dict(cls.test_params)

    @classmethod
    def validate_params(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` checked against :attr:`param_constraints` and converted; names not declared
        pass through unchanged (the registry refuses unknown names before)."""
        name = cls.component_name()
        out = {}
        for key, value in values.items():
            spec = cls.param_constraints.get(key, _UNDECLARED)
            out[key] = value if spec is _UNDECLARED else check_value(name, key, spec, value)
        return out

    def set_params_from(self, **values: Any) -> dict[str, Any]:
        """Validate ``values``, store each on its attribute, and return the converted values."""
        checked = type(self).validate_params(values)
        for key, value in checked.items():
            if key not in self.hidden_params:
                setattr(self, self.param_attributes.get(key, key), value)
        return checked

    def get_params(self) -> dict[str, Any]:
        """The declared parameters and their current values, in declaration order."""
        return {
            k: getattr(self, self.param_attributes.get(k, k)) for k in self.param_constraints
            if k not in self.hidden_params
        }

    def describe(self) -> dict[str, Any]:
        """``{"name": registered name, **parameters}``, what provenance records."""
        return {"name": type(self).component_name(), **self.get_params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


_UNDECLARED = object()
