"""Name registries: how suites, the command line and plugins reach every component.

A :class:`Registry` maps a stable string name (the ID written in result tables) to a
class or factory.  Built-ins register with a decorator, in the style of score_sde's
``register_predictor``; outside packages register through an entry-point group
(``scorebench.samplers``, ``scorebench.targets``, ...), loaded the first time a name
is looked up.  Every user mistake -- an unknown name, an unknown or missing parameter --
is reported as one :class:`ValueError` that lists what is allowed.  Where a name is expected, a
``module:Name`` or ``path/file.py:Name`` spec loads a component from outside
(:mod:`scorebench.plugins`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .params import Parameterised
from .params import allowed as allowed_values
from .plugins import PluginError, is_spec, load_object

T = TypeVar("T")

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamInfo:
    """One constructor parameter of a registered component."""

    name: str
    default: Any  # ``inspect.Parameter.empty`` when required
    annotation: str
    #: the values it allows (its declared constraint), ``""`` where the component declares none
    allowed: str = ""

    @property
    def required(self) -> bool:
        return self.default is _EMPTY

    def __str__(self) -> str:
        ann = f": {self.annotation}" if self.annotation else ""
        return f"{self.name}{ann}" + ("" if self.required else f" = {self.default!r}")


class Registry(Generic[T]):
    """A named collection of factories of one kind (targets, samplers, ...).

    Parameters
    ----------
    kind:
        Singular noun used in messages, e.g. ``"sampler"``.
    entry_point_group:
        Entry-point group scanned for plugins, e.g. ``"scorebench.samplers"``.
    base:
        The class every component must be an instance of (set once the class exists); a
        plugin that builds anything else is refused with a message.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, base: type | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.base = base
        self._factories: dict[str, Callable[..., T]] = {}
        self._plugins_loaded = False
        #: entry-point name -> the entry point's value (``module:attr``), for provenance
        self.entry_points: dict[str, str] = {}

    # -- registration -----------------------------------------------------------------
    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; the name must be new."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory)
            return factory

        return deco

    def add(self, name: str, factory: Callable[..., T]) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind} name must be an identifier-like string, got {name!r}")
        if name in self._factories and self._factories[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory
        if isinstance(factory, type) and not factory.__dict__.get("registered_name"):
            # A class learns the first name it is registered under (written to result tables);
            # an alias registered later, e.g. by a plugin, does not rename it.
            factory.registered_name = name  # type: ignore[attr-defined]

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._factories:
                continue
            try:
                self.add(ep.name, ep.load())
                self.entry_points[ep.name] = ep.value
            except Exception as exc:  # a broken plugin must not break the built-ins
                warnings.warn(
                    f"could not load {self.kind} plugin {ep.name!r} from entry point "
                    f"{ep.value!r} (group {self.entry_point_group}): {exc!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    # -- lookup -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """Sorted registered names, plugins included."""
        self._load_plugins()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._factories

    def factory(self, name: str) -> Callable[..., T]:
        """The class or factory registered as ``name``, or loaded from a ``module:Name`` spec."""
        if is_spec(name):
            try:
                obj = load_object(name)
            except PluginError as exc:
                raise ValueError(f"{self.kind} {exc}") from None
            if not callable(obj):
                raise ValueError(f"{self.kind} {name!r} is a {type(obj).__name__}, not a class or factory")
            return obj
        self._load_plugins()
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            ) from None

    def params(self, name: str) -> list[ParamInfo]:
        """Constructor parameters of ``name`` with their defaults."""
        factory = self.factory(name)
        sig = inspect.signature(factory)
        declared = factory.param_constraints if _declares(factory) else {}
        out = []
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = p.annotation
            ann_s = "" if ann is _EMPTY else (ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann)))
            text = allowed_values(declared[p.name]) if p.name in declared else ""
            out.append(ParamInfo(p.name, p.default, ann_s, text))
        return out

    def build(self, name: str, /, **params: Any) -> T:
        """Instantiate ``name`` with keyword ``params``, checking names, then values against the
        component's declared constraints (:mod:`scorebench.params`), before calling."""
        factory = self.factory(name)
        known = self.params(name)
        allowed = {p.name for p in known}
        accepts_any = any(
            p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()
        )
        unknown = sorted(set(params) - allowed)
        if unknown and not accepts_any:
            raise ValueError(
                f"{self.kind} {name!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(map(str, known)) or '(none)'}"
            )
        missing = [p.name for p in known if p.required and p.name not in params]
        if missing:
            raise ValueError(
                f"{self.kind} {name!r}: missing required parameter(s) {', '.join(missing)}; "
                f"signature: {', '.join(map(str, known))}"
            )
        if _declares(factory):
            factory.validate_params(params)
        obj = factory(**params)
        if self.base is not None and not isinstance(obj, self.base):
            raise ValueError(
                f"{self.kind} {name!r} built a {type(obj).__name__}, not a scorebench {self.base.__name__} "
                f"(subclass scorebench.{self.base.__name__})"
            )
        return obj


def _declares(factory: Any) -> bool:
    """Whether ``factory`` is a component class with declared parameters."""
    return isinstance(factory, type) and issubclass(factory, Parameterised) and bool(factory.param_constraints)
