"""Placeholder for ``scorebench compare``; filled in by the tracking work of issue 6."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``compare`` subcommand (not yet available)."""
