"""Fixtures of the micro-benchmarks: the device parameter (CUDA skipped without a GPU), the
common ``extra_info`` fields, and the machine description written into every JSON file."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from scorebench.timing import environment_info

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

#: seed of every input draw of the micro-benchmarks
SEED = 0


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


def gen(device: str, offset: int = 0) -> torch.Generator:
    """A generator on ``device`` seeded with ``SEED + offset``."""
    return torch.Generator(torch.device(device)).manual_seed(SEED + offset)


def record(
    benchmark: Any, *, device: str, n: int, d: int, dtype: torch.dtype, accuracy: float, accuracy_metric: str,
    seed: int = SEED, **extra: Any,
) -> None:
    """Store the cell description and the accuracy figure in ``benchmark.extra_info`` (saved in the
    JSON beside the timing statistics).  ``accuracy`` is an error against an exact truth (lower is
    better); ``accuracy_metric`` says which."""
    if not math.isfinite(accuracy):
        raise AssertionError(f"non-finite accuracy figure {accuracy_metric} = {accuracy}")
    benchmark.extra_info.update({
        "device": device, "n": n, "d": d, "dtype": str(dtype).removeprefix("torch."), "seed": seed,
        "accuracy": float(accuracy), "accuracy_metric": accuracy_metric, **extra,
    })


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """GPU model, driver, CUDA runtime, library versions, thread counts and the machine name,
    next to pytest-benchmark's CPU description."""
    machine_info["scorebench"] = environment_info()
