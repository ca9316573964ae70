"""Numbers as people read them, shared by the screens and the verdicts."""
from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def percent(value: Any) -> str:
    """A share as a percentage that keeps small shares visible: 41%, 3.2%, 0.05%."""
    if missing(value):
        return "-"
    p = float(value) * 100
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%" if p >= 0.1 else f"{p:.2f}%"
