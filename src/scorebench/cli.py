"""The ``scorebench`` command line.

    scorebench list targets|processes|estimators|samplers   registered names with parameters
    scorebench run SUITE                                    run a suite file

Exit codes: 0 ok, 1 some cells failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .estimators import ESTIMATORS
from .processes import PROCESSES
from .registry import Registry
from .samplers import SAMPLERS
from .targets import TARGETS

REGISTRIES: dict[str, Registry] = {
    "targets": TARGETS,
    "processes": PROCESSES,
    "estimators": ESTIMATORS,
    "samplers": SAMPLERS,
}


def _summary(registry: Registry, name: str) -> str:
    doc = inspect.getdoc(registry.factory(name)) or ""
    return doc.splitlines()[0] if doc else ""


def cmd_list(args: argparse.Namespace) -> int:
    registry = REGISTRIES[args.kind]
    for name in registry.names():
        print(f"{name}: {_summary(registry, name)}")
        for p in registry.params(name):
            print(f"    {p}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.suite)
    if not path.is_file():
        print(f"scorebench run: suite file {str(path)!r} not found", file=sys.stderr)
        return 2
    print(f"scorebench {__version__}: no suite runner yet; {path} was not run.")
    print("Registered components:")
    for kind, registry in REGISTRIES.items():
        print(f"  {kind}: {', '.join(registry.names())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorebench",
        description="Benchmark diffusion-model samplers and score estimators against exact ground truth.",
    )
    parser.add_argument("--version", action="version", version=f"scorebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list registered components with their parameters")
    p_list.add_argument("kind", choices=sorted(REGISTRIES))
    p_list.set_defaults(func=cmd_list)
    p_run = sub.add_parser("run", help="run a suite file")
    p_run.add_argument("suite", help="path to a suite TOML file")
    p_run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
