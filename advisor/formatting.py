"""Numbers written for people, the same way in reasons, the terminal and the reports."""
from __future__ import annotations

import math


def money(x: float) -> str:
    """Dollars: cents for ordinary amounts, two significant digits for fractions of a cent."""
    if x != 0 and abs(x) < 0.01:
        decimals = min(8, 1 - math.floor(math.log10(abs(x))))
        return f"${x:.{decimals}f}"
    return f"${x:,.2f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"
