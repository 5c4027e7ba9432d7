"""Components from outside scorebench: loading ``module:Name`` specs, and recording where they came from.

A suite, ``check-sampler`` or a registry lookup may name a component in three ways:

* a registered name (``euler_maruyama``), built-in or added by an installed package through
  an entry point (``scorebench.samplers``, ...);
* ``package.module:Name``: imported with the current directory on ``sys.path``, as
  ``python -m`` does, so a module beside the user needs no installation;
* ``path/to/file.py:Name``: that file, relative to the current directory or, for a suite,
  to the suite file's folder.

Loading a module runs its code, as importing it would.

:func:`describe_plugin` says where a component that is not part of scorebench came from --
its spec, module, source file and the sha256 of that file, and the distribution (name and
version) that installed it, if any -- so that a result row can be traced to the exact code
that produced it (``provenance.json``, ``fits.jsonl``, ``samples.jsonl``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import packages_distributions, version
from pathlib import Path
from typing import Any


class PluginError(ValueError):
    """A ``module:Name`` spec that cannot be loaded."""


def is_spec(name: str) -> bool:
    """Whether ``name`` is a ``module:Name`` or ``file.py:Name`` spec rather than a registered name."""
    return isinstance(name, str) and ":" in name


def _import_file(path: Path) -> Any:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module_name = f"scorebench_file_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _split(spec: str) -> tuple[str, str]:
    module_part, sep, attr = spec.partition(":")
    if not sep or not module_part or not attr or ":" in attr:
        raise PluginError(f"{spec!r}: expected 'package.module:Name' or 'path/to/file.py:Name'")
    return module_part, attr


def _is_file(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def resolve_spec(spec: str, search: Sequence[str | Path] = ()) -> str:
    """``spec`` with a file path made absolute: the file in the current directory, else in the first
    folder of ``search`` that has it (a module spec is returned as it is).  Raises
    :class:`PluginError` naming the places looked in."""
    module_part, attr = _split(spec)
    if not _is_file(module_part):
        return spec
    candidates = [Path(module_part)] + [Path(base) / module_part for base in search]
    found = next((p.resolve() for p in candidates if p.is_file()), None)
    if found is None:
        tried = ", ".join(str(p) for p in dict.fromkeys(c.resolve() for c in candidates))
        raise PluginError(f"{spec!r}: no file {module_part!r} (looked for {tried})")
    return f"{found}:{attr}"


def load_object(spec: str, search: Sequence[str | Path] = ()) -> Any:
    """The object named by ``module:Name`` or ``path/file.py:Name`` (see the module docstring).

    A file path is looked up in the current directory, then in each folder of ``search``.
    Raises :class:`PluginError` with what was tried when the module, file or attribute is missing
    or importing the module raises."""
    module_part, attr = _split(resolve_spec(spec, search))
    if _is_file(module_part):
        where = module_part
        try:
            module = _import_file(Path(module_part))
        except Exception as exc:
            raise PluginError(f"{spec!r}: importing {module_part} raised {type(exc).__name__}: {exc}") from None
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)  # as `python -m` does: modules beside the user need no install
        where = f"module {module_part!r}"
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise PluginError(
                f"{spec!r}: no module named {exc.name!r} (searched the current directory {cwd} and the installed "
                "packages; for a file give its path, e.g. 'my_sampler.py:MySampler')"
            ) from None
        except Exception as exc:
            raise PluginError(f"{spec!r}: importing {module_part} raised {type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in vars(module) if not n.startswith("_"))
            defined = ", ".join(public) or "(nothing)"
            raise PluginError(f"{spec!r}: {where} has no attribute {attr!r}; it defines {defined}")
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def describe_plugin(component: Any, spec: str | None = None) -> dict[str, Any] | None:
    """Where a component (an instance, class or factory) that is not part of scorebench comes from:
    ``spec``, ``module``, ``qualname``, ``file``, ``sha256`` of that file, ``distribution`` and
    ``version`` (``None`` for a module no installed distribution provides).  ``None`` for
    scorebench's own components."""
    factory = component if inspect.isclass(component) or inspect.isfunction(component) else type(component)
    module_name = getattr(factory, "__module__", "") or ""
    if module_name == "scorebench" or module_name.startswith("scorebench."):
        return None
    module = sys.modules.get(module_name)
    try:
        file = inspect.getsourcefile(factory) or getattr(module, "__file__", None)
    except TypeError:
        file = getattr(module, "__file__", None)
    top = module_name.split(".")[0]
    dists = [] if module_name.startswith("scorebench_file_plugin_") else _distributions().get(top, [])
    dist = dists[0] if dists else None
    try:
        dist_version = version(dist) if dist else None
    except Exception:  # a distribution without metadata
        dist_version = None
    return {
        "spec": spec or f"{module_name}:{factory.__qualname__}",
        "module": module_name,
        "qualname": factory.__qualname__,
        "file": str(Path(file).resolve()) if file else None,
        "sha256": _file_sha256(file),
        "distribution": dist,
        "version": dist_version,
    }
