"""Small predicates for checking user-given parameters (booleans are not numbers here), and
the memory arithmetic that lets a suite be refused before anything is allocated."""

from __future__ import annotations

import math
import os
from typing import Any

#: integers that fit a signed 64-bit column (result tables store seeds, steps and sample sizes as int64)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: float64 copies of a ``(dim, dim)`` matrix (and of the ``(n_components, dim)`` means and variances)
#: alive at once while a target is built or its moments are taken: the matrix, its eigenbasis,
#: and the QR / eigendecomposition workspace
MATRIX_COPIES = 4
#: float64 ``(n, dim)`` arrays alive at once in a cell: sampler state, Gaussian noise, score,
#: the two reference draws, the training draw of a learned estimator and metric temporaries
SAMPLE_COPIES = 8


def is_int_at_least(value: Any, minimum: int) -> bool:
    """``value`` is a Python integer (not a bool) and ``>= minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_int64(value: Any) -> bool:
    """``value`` is a Python integer (not a bool) that fits a signed 64-bit integer."""
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def is_positive_real(value: Any) -> bool:
    """``value`` is a finite, positive int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def bytes_needed(dim: int, *, n_components: int = 1, matrices: int = 0, n_samples: int = 0, steps: int = 0) -> int:
    """Bytes of the largest float64 tensors that one target, or one cell on it, holds at once.

    * ``matrices`` ``(dim, dim)`` matrices (a Gaussian's covariance and eigenbasis, a random
      rotation, the covariance a moment or exact-law metric takes), each :data:`MATRIX_COPIES` times;
    * the ``(n_components, dim)`` means and variances of a mixture, :data:`MATRIX_COPIES` times;
    * :data:`SAMPLE_COPIES` arrays of ``n_samples`` rows of ``dim`` coordinates plus
      ``n_components`` mixture responsibilities (``n_samples`` is the largest of the cell's sample
      size and a learned estimator's ``n_train``);
    * the ``steps + 1`` times of the time grid.

    Python integers, so the product never overflows; it is an estimate of the peak, meant to
    refuse sizes that cannot be allocated at all, not to predict the peak exactly.
    """
    per_matrix = dim * dim * matrices + n_components * dim
    return 8 * (MATRIX_COPIES * per_matrix + SAMPLE_COPIES * n_samples * (dim + n_components) + steps + 1)


def available_memory() -> int | None:
    """Bytes of memory this machine can give now: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else free physical pages (``os.sysconf``); ``None`` when neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (``"7.3 TiB"``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
