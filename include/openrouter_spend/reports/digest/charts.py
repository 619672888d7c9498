"""The digest's charts as PNG bytes: matplotlib's Agg canvas, fixed style and metadata, so equal inputs give equal bytes.

No pyplot: each chart is a `Figure` on its own `FigureCanvasAgg`, so nothing depends on (or changes) a global
backend. PNG metadata is pinned (matplotlib otherwise writes its version as `Software`).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from openrouter_spend.reports.digest.data import ACCOUNT, DigestData

# Colour-blind-safe palette (Okabe–Ito, then greys); projects get colours by spend rank, "other" is grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F7F7F")
OTHER_COLOUR = "#BBBBBB"
INK = "#1F2933"
MUTED = "#5F6B7A"
GRID = "#E4E7EB"
WIDTH_IN, HEIGHT_IN, DPI = 7.4, 2.7, 150
PNG_METADATA = {"Software": None, "Title": None, "Author": None, "Description": None}
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 7,
    "svg.hashsalt": "openrouter-spend",
    "path.simplify": True,
    # Labels are project, key and provider names: "$...$" in a name must print as text, not parse as math.
    "text.parse_math": False,
}


@dataclass(frozen=True)
class Chart:
    """One rendered chart: file name, PNG bytes and a sentence saying what it shows (alt text)."""

    name: str
    png: bytes
    alt: str


def render_all(data: DigestData) -> list[Chart]:
    """Every chart the day's data supports, in the order the digest shows them."""
    charts = [spend_by_project(data), burn_and_runway(data), provider_mix(data), premium_share(data),
              fallback_share(data)]
    return [chart for chart in charts if chart is not None]


def _figure(height: float = HEIGHT_IN):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA, facecolor="white")
    return buffer.getvalue()


def _style():
    import matplotlib

    return matplotlib.rc_context(STYLE)


def _money_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"${value:,.0f}"))


def _share_axis(axis) -> None:
    from matplotlib.ticker import PercentFormatter

    # Decimals follow the tick spacing: steps of 2.5% read "2.5%", never a rounded "2%".
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _day_labels(ax, days: list[date]) -> None:
    step = max(1, -(-len(days) // 8))  # at most 8 labels, so "12 Nov" never runs into "13 Nov"
    positions = list(range(len(days) - 1, -1, -step))[::-1]  # always label the digest's own (newest) day
    ax.set_xticks(positions)
    ax.set_xticklabels([f"{days[i]:%d %b}" for i in positions])
    ax.set_xlim(-0.6, max(len(days), 7) - 0.4)  # a short history keeps normal bar widths


def spend_by_project(data: DigestData, top: int = 7) -> Chart | None:
    """Stacked daily credit spend of the biggest projects over the trend window."""
    if not data.trend:
        return None
    days = sorted({row["usage_date"] for row in data.trend})
    totals: dict[str, float] = defaultdict(float)
    for row in data.trend:
        totals[row["project"]] += row["spend_usd"]
    ranked = sorted(totals, key=lambda project: (-totals[project], project))
    shown = ranked if len(ranked) <= top + 1 else ranked[:top]  # never a lone "1 other"
    series: dict[str, list[float]] = {project: [0.0] * len(days) for project in shown}
    other = [0.0] * len(days)
    index = {day: i for i, day in enumerate(days)}
    for row in data.trend:
        target = series.get(row["project"])
        (target if target is not None else other)[index[row["usage_date"]]] += row["spend_usd"]
    with _style():
        figure = _figure(3.0)
        ax = figure.add_subplot()
        bottom = [0.0] * len(days)
        layers = [(project, series[project], PALETTE[i % len(PALETTE)]) for i, project in enumerate(shown)]
        if any(other):
            layers.append((f"{len(ranked) - len(shown)} other", other, OTHER_COLOUR))
        for label, values, colour in layers:
            ax.bar(range(len(days)), values, bottom=bottom, color=colour, width=0.78, label=label, linewidth=0)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.bar([len(days) - 1], [bottom[-1]], fill=False, edgecolor=INK, linewidth=1.2, width=0.78)
        _day_labels(ax, days)
        _money_axis(ax.yaxis)
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title(f"Daily credit spend by project, last {len(days)} loaded days (outlined: {data.day:%d %b})")
        handles, labels = ax.get_legend_handles_labels()
        # Top of the stack first, so the legend reads in the same order as the bars.
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0), handlelength=1.0)
        figure.subplots_adjust(left=0.08, right=0.78, top=0.88, bottom=0.12)
        png = _png(figure)
    top_project = ranked[0]
    return Chart("spend_by_project.png", png,
                 f"Stacked daily credit spend by project for {days[0]:%d %b} to {days[-1]:%d %b}; "
                 f"{top_project} spent the most (${totals[top_project]:,.2f}).")


def burn_and_runway(data: DigestData) -> Chart | None:
    """Daily burn against its 7-day average, with the balance (and top-ups) on the right axis."""
    points = [row for row in data.balance_trend if row["burn_usd"] is not None]
    if not points:
        return None
    days = [row["as_of_date"] for row in points]
    positions = list(range(len(days)))
    with _style():
        figure = _figure(3.0)
        ax = figure.add_subplot()
        ax.bar(positions, [row["burn_usd"] for row in points], color="#9FB3C8", width=0.72, label="daily burn",
               linewidth=0)
        ax.plot(positions, [row["burn_7d_avg_usd"] for row in points], color=PALETTE[0], linewidth=2,
                label="7-day average burn")
        _money_axis(ax.yaxis)
        ax.set_ylabel("credits spent per day")
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        balance_ax = ax.twinx()
        # a balance from a late snapshot is unknown (NaN leaves a gap), never the fetch time's figure
        balance_ax.plot(positions, [math.nan if row["balance_usd"] is None else row["balance_usd"] for row in points],
                        color=PALETTE[5], linewidth=1.6,
                        marker="o", markersize=2.5, label="balance (right axis)")
        balance_ax.set_ylim(0, max(row["balance_usd"] or 0 for row in points) * 1.3 or 1)
        ax.set_ylim(0, max(max(row["burn_usd"], row["burn_7d_avg_usd"] or 0) for row in points) * 1.15 or 1)
        _money_axis(balance_ax.yaxis)
        balance_ax.spines["right"].set_visible(True)
        balance_ax.spines["top"].set_visible(False)
        balance_ax.tick_params(colors=MUTED)
        for position, row in zip(positions, points, strict=True):
            if row["topup_usd"] and row["balance_usd"] is not None:
                balance_ax.annotate(f"+${row['topup_usd']:,.0f} top-up", (position, row["balance_usd"]),
                                    xytext=(0, 8), textcoords="offset points", ha="center", fontsize=7,
                                    color=PALETTE[5])
        _day_labels(ax, days)
        newest = points[-1]
        runway = newest.get("runway_days")
        runway_text = f"{runway:.1f} days of runway" if runway is not None else "runway unknown"
        left = f"${newest['balance_usd']:,.2f} left" if newest["balance_usd"] is not None else "balance unknown"
        ax.set_title(f"Credit burn and balance: {left}, {runway_text}")
        handles = ax.get_legend_handles_labels()
        more = balance_ax.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper center", ncols=3,
                  bbox_to_anchor=(0.5, -0.12))
        figure.subplots_adjust(left=0.09, right=0.9, top=0.9, bottom=0.24)
        png = _png(figure)
    return Chart("burn_and_runway.png", png,
                 f"Daily credit burn with its 7-day average and the balance; {left}, {runway_text}.")


def provider_mix(data: DigestData, top: int = 8) -> Chart | None:
    """Which providers served the account's spend today against the previous 7 days."""
    rows = [row for row in data.provider_mix if row["project"] == ACCOUNT]
    if not rows:
        return None
    rows = sorted(rows, key=lambda row: (-(row["spend_share"] or 0), row["provider_name"]))
    shown = rows[:top]
    labels = [row["provider_name"] for row in shown]
    today = [row["spend_share"] or 0 for row in shown]
    before = [row["prior_7d_spend_share"] or 0 for row in shown]
    if len(rows) > top:
        labels.append(f"{len(rows) - top} other")
        today.append(sum(row["spend_share"] or 0 for row in rows[top:]))
        before.append(sum(row["prior_7d_spend_share"] or 0 for row in rows[top:]))
    with _style():
        figure = _figure(0.9 + 0.27 * len(labels))
        ax = figure.add_subplot()
        positions = list(range(len(labels)))[::-1]
        height = 0.38
        ax.barh([p + height / 2 for p in positions], today, height=height, color=PALETTE[0], label=f"{data.day:%d %b}")
        ax.barh([p - height / 2 for p in positions], before, height=height, color="#B8C4D0", label="previous 7 days")
        for position, value in zip(positions, today, strict=True):
            ax.text(value + 0.005, position + height / 2, f"{value:.0%}", va="center", fontsize=7, color=INK)
        ax.set_yticks(positions)
        ax.set_yticklabels(labels)
        _share_axis(ax.xaxis)
        ax.set_xlim(0, max([*today, *before, 0.1]) * 1.15)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title("Share of credit spend by serving provider")
        ax.legend(loc="lower right")
        figure.subplots_adjust(left=0.2, right=0.97, top=0.86, bottom=0.1)
        png = _png(figure)
    lead = shown[0]
    return Chart("provider_mix.png", png,
                 f"Provider share of credit spend on {data.day:%d %b} against the previous 7 days; "
                 f"{lead['provider_name']} served {lead['spend_share'] or 0:.0%}.")


def premium_share(data: DigestData, top: int = 4) -> Chart | None:
    """Premium-model share of spend: the account against its 28-day baseline, and the projects spending most on premium."""
    account = [row for row in data.premium_trend if row["project"] == ACCOUNT and row["premium_spend_share"] is not None]
    if not account:
        return None
    days = [row["usage_date"] for row in account]
    index = {day: i for i, day in enumerate(days)}
    premium_spend: dict[str, float] = defaultdict(float)
    for row in data.premium_trend:
        if row["project"] != ACCOUNT and row["premium_spend_share"]:
            premium_spend[row["project"]] += row["premium_spend_share"] * (row["spend_usd"] or 0)
    projects = sorted(premium_spend, key=lambda project: (-premium_spend[project], project))[:top]
    with _style():
        figure = _figure()
        ax = figure.add_subplot()
        ax.plot(range(len(days)), [row["premium_spend_share"] for row in account], color=INK, linewidth=2.2,
                label="whole account")
        baseline = [(index[row["usage_date"]], row["premium_spend_share_baseline_28d"]) for row in account
                    if row["premium_spend_share_baseline_28d"] is not None]
        if baseline:
            ax.plot([p for p, _ in baseline], [v for _, v in baseline], color=INK, linewidth=1, linestyle="--",
                    label="account, previous 28 days" if data.baseline_days >= 28
                    else "account, earlier days (≤ 28)")
        for i, project in enumerate(projects):
            points = [(index[row["usage_date"]], row["premium_spend_share"]) for row in data.premium_trend
                      if row["project"] == project and row["usage_date"] in index
                      and row["premium_spend_share"] is not None]
            ax.plot([p for p, _ in points], [v for _, v in points], color=PALETTE[(i + 1) % len(PALETTE)],
                    linewidth=1.2, label=project)
        _day_labels(ax, days)
        _share_axis(ax.yaxis)
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title("Premium-model share of credit spend")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.subplots_adjust(left=0.08, right=0.76, top=0.88, bottom=0.12)
        png = _png(figure)
    newest = account[-1]
    return Chart("premium_share.png", png,
                 f"Premium-model share of credit spend per day; the account was at {newest['premium_spend_share']:.0%} "
                 f"on {newest['usage_date']:%d %b}.")


def fallback_share(data: DigestData, top: int = 5) -> Chart | None:
    """Share of requests served after a fallback, per project, where per-request data covers it."""
    points = [row for row in data.fallback_trend if row["fallback_share"] is not None]
    if not points:
        return None
    days = sorted({row["usage_date"] for row in points})
    index = {day: i for i, day in enumerate(days)}
    peak: dict[str, float] = defaultdict(float)
    for row in points:
        peak[row["project"]] = max(peak[row["project"]], row["fallback_share"])
    projects = sorted(peak, key=lambda project: (-peak[project], project))[:top]
    with _style():
        figure = _figure()
        ax = figure.add_subplot()
        for i, project in enumerate(projects):
            rows = [row for row in points if row["project"] == project]
            series = [(index[row["usage_date"]], row["fallback_share"]) for row in rows]
            ax.plot([p for p, _ in series], [v for _, v in series], color=PALETTE[i % len(PALETTE)], linewidth=1.5,
                    marker="o", markersize=2.5, label=project)
            # A sampled share carries its 95% interval: a shaded band, not a confident line alone.
            band = [(index[row["usage_date"]], row["fallback_share_ci_low"], row["fallback_share_ci_high"])
                    for row in rows if row.get("fallback_share_ci_low") is not None
                    and row.get("fallback_share_ci_high") is not None]
            if band:
                ax.fill_between([p for p, _, _ in band], [lo for _, lo, _ in band], [hi for _, _, hi in band],
                                color=PALETTE[i % len(PALETTE)], alpha=0.12, linewidth=0)
        _day_labels(ax, days)
        _share_axis(ax.yaxis)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title("Share of requests served after a fallback (projects with per-request data)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.subplots_adjust(left=0.08, right=0.78, top=0.88, bottom=0.12)
        png = _png(figure)
    return Chart("fallback_share.png", png,
                 f"Fallback share of requests per day for {', '.join(projects)}, with the 95% interval of each "
                 "sampled day shaded.")
