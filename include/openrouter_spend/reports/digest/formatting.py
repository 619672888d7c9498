"""How numbers read in the digest: dollars, signed changes, shares and dates, the same in HTML and Markdown."""

from __future__ import annotations

from datetime import date

MINUS = "\u2212"
DASH = "\u2014"


def money(value: float | None, decimals: int = 2) -> str:
    """$1,234.56; a dash for unknown."""
    if value is None:
        return DASH
    sign = MINUS if value < 0 and round(abs(value), decimals) > 0 else ""
    return f"{sign}${abs(value):,.{decimals}f}"


def signed_money(value: float | None, decimals: int = 2) -> str:
    """+$12.34 / −$1.20 / $0.00; a dash for unknown."""
    if value is None:
        return DASH
    if round(value, decimals) == 0:
        return f"${0:.{decimals}f}"
    return f"{'+' if value > 0 else MINUS}${abs(value):,.{decimals}f}"


def share(value: float | None, decimals: int = 0) -> str:
    """72% (a fraction in, a percentage out); a dash for unknown."""
    if value is None:
        return DASH
    return f"{value * 100:.{decimals}f}%"


def share_with_interval(value: float | None, low: float | None, high: float | None, decimals: int = 1) -> str:
    """12.0% (95% CI 8.1–16.3%) for a sampled estimate; the plain share when it was counted in full."""
    if value is None or low is None or high is None or (low == value == high):
        return share(value, decimals)
    return f"{share(value, decimals)} (95% CI {low * 100:.{decimals}f}–{high * 100:.{decimals}f}%)"


def signed_share(value: float | None) -> str:
    """+18% / −4%; a dash for unknown."""
    if value is None:
        return DASH
    rounded = round(value * 100)
    if rounded == 0:
        return "0%"
    return f"{'+' if rounded > 0 else MINUS}{abs(rounded)}%"


def points(value: float | None) -> str:
    """A change of a share in percentage points: +21.7 pts."""
    if value is None:
        return DASH
    rounded = round(value * 100, 1)
    if rounded == 0:
        return "0 pts"
    return f"{'+' if rounded > 0 else MINUS}{abs(rounded):.1f} pts"


def count(value: int | float | None) -> str:
    """12,345; a dash for unknown."""
    if value is None:
        return DASH
    return f"{int(value):,}"


def long_day(day: date) -> str:
    """Wednesday 25 November 2026."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def short_day(day: date | None) -> str:
    """Wed 25 Nov."""
    if day is None:
        return DASH
    return f"{day:%a} {day.day} {day:%b}"


def ratio_of_budget(value: float | None) -> str:
    """The share of a budget used, 0% to several hundred percent."""
    return share(value)


def coverage(value: float | None) -> str:
    """A coverage share with the digits a small one needs: 42%, 4.2%, 0.056%; a dash for unknown."""
    if value is None:
        return DASH
    percent = value * 100
    if percent == 0 or percent >= 10:
        return f"{percent:.0f}%"
    if percent >= 1:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%"
