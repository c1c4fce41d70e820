"""Numbers written for people, the same way in reasons, the terminal and the reports."""
from __future__ import annotations

import math


def money(x: float) -> str:
    """Dollars: cents for ordinary amounts, two significant digits for fractions of a cent; "-$5.00" below 0."""
    if x < 0:
        return "-" + money(-x)
    if x != 0 and abs(x) < 0.01:
        decimals = min(8, 1 - math.floor(math.log10(abs(x))))
        return f"${x:.{decimals}f}"
    return f"${x:,.2f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def count(x: float) -> str:
    """A count or volume for people: "3,560", "12.5", "0.25": whole numbers whole, others to three significant
    digits, never "3.56e+03"."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == int(x) and abs(x) < 1e6:  # a whole count is written whole
        return f"{int(x):,}"
    if abs(x) >= 100:
        digits = math.floor(math.log10(abs(x))) + 1
        return f"{round(x, 3 - digits):,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}".rstrip("0").rstrip(".")


def points_worth(share: float) -> str:
    """A share of the money at stake in accuracy points (the money decision's tolerance, 0.01 -> one point)."""
    points = round(100 * share, 6)
    return "one accuracy point's worth" if points == 1 else f"{points:g} accuracy points' worth"
