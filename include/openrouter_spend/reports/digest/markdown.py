"""digest.md: the same digest for chat and tickets, in the same order, charts linked as files beside it.

It is also the plain-text part of the digest e-mail. The document is the template
templates/digest/digest.md.j2, rendered in the Markdown environment: every value that reaches the text goes
through escaping.markdown by default, so a name (projects, owners, keys, annotations, findings) cannot become
markup, raw HTML or a link, nor break a table.
"""

from __future__ import annotations

from collections.abc import Sequence

from openrouter_spend import rendering
from openrouter_spend.reports.digest.charts import Chart
from openrouter_spend.reports.digest.data import DigestData
from openrouter_spend.reports.digest.html import helpers, movers_and_premium
from openrouter_spend.reports.digest.savings import summary as savings_summary
from openrouter_spend.reports.digest.tables import CsvTable

TEMPLATE = "digest/digest.md.j2"


def render(data: DigestData, charts: Sequence[Chart], tables: Sequence[CsvTable]) -> str:
    """The whole Markdown document."""
    return rendering.render(TEMPLATE, data=data, tables=tables, chart_list=charts,
                            charts={c.name: c for c in charts}, changes=movers_and_premium(data),
                            savings=savings_summary(data.savings), **helpers())
