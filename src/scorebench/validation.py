"""Small predicates for checking user-given parameters (booleans are not numbers here)."""

from __future__ import annotations

import math
from typing import Any


def is_int_at_least(value: Any, minimum: int) -> bool:
    """``value`` is a Python integer (not a bool) and ``>= minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_positive_real(value: Any) -> bool:
    """``value`` is a finite, positive int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
