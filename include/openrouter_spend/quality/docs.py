"""Data Docs that open offline, with one entry per usage day.

GX writes its pages with stylesheets, scripts, icons and its logo loaded from CDNs, and an index whose table
JavaScript from those CDNs draws: offline (a file opened from an e-mail, a locked-down laptop) the pages lose
their pass/fail icons and the index is an empty page. After each build, the pages GX wrote are made
self-contained (remote tags removed, the local stylesheet `static/styles/offline.css` linked, icons as text,
the logo from `static/images/`) and the index is replaced by one rendered here from the quality ledger: one
row per usage day, its newest run, its failed checks, and a link to that run's GX page. GX offers no option
to serve its assets locally, so this post-processing is ours.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.rendering import render

OFFLINE_MARK = "<!-- openrouter-spend: offline -->"
STYLESHEET = Path(__file__).with_name("offline.css")
REMOTE_TAG = re.compile(
    r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>"
    r"|<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)
# Font Awesome icons GX draws status with; their meaning kept as a character and a colour class.
ICON = re.compile(r"<i class=\"fas (fa-[a-z-]+)[^\"]*\"[^>]*>\s*</i>")
ICON_TEXT = {"fa-check-circle": ("✔", "ors-pass"), "fa-check": ("✔", "ors-pass"), "fa-times": ("✘", "ors-fail"),
             "fa-times-circle": ("✘", "ors-fail"), "fa-exclamation-triangle": ("⚠", "ors-warn")}
REMOTE_LOGO = re.compile(r"src=\"https?://[^\"]*/(logo-long\.png)[^\"]*\"")
# GX's page scripts call jQuery and bootstrap-table, which no longer load: inline scripts go too.
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
PAGE_NAME = "warehouse-checks.html"


def _root_prefix(page: Path, docs_dir: Path) -> str:
    """The relative path from `page` back to the docs folder ('' for the index, '../../' deeper)."""
    depth = len(page.relative_to(docs_dir).parts) - 1
    return "../" * depth


def make_page_offline(page: Path, docs_dir: Path) -> bool:
    """Rewrite one GX page to need nothing but the docs folder; False when it was already rewritten."""
    text = page.read_text(encoding="utf-8")
    if OFFLINE_MARK in text:
        return False
    prefix = _root_prefix(page, docs_dir)
    text = REMOTE_TAG.sub("", text)
    text = INLINE_SCRIPT.sub("", text)
    text = REMOTE_LOGO.sub(lambda match: f'src="{prefix}static/images/{match.group(1)}"', text)

    def icon(match: re.Match) -> str:
        symbol, css_class = ICON_TEXT.get(match.group(1), ("•", "ors-info"))
        return f'<span class="ors-icon {css_class}" aria-hidden="true">{symbol}</span>'

    text = ICON.sub(icon, text)
    link = f'<link rel="stylesheet" href="{prefix}static/styles/offline.css">'
    text = text.replace("</head>", f"{link}\n{OFFLINE_MARK}\n</head>", 1)
    temporary = page.with_suffix(".html.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, page)
    return True


def make_offline(docs_dir: Path) -> int:
    """Make every GX page under `docs_dir` self-contained and install the stylesheet; returns pages rewritten."""
    styles = docs_dir / "static" / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    (styles / "offline.css").write_text(STYLESHEET.read_text(encoding="utf-8"), encoding="utf-8")
    rewritten = 0
    for page in sorted(docs_dir.rglob("*.html")):
        if page.name != "index.html" or page.parent != docs_dir:
            rewritten += make_page_offline(page, docs_dir)
    return rewritten


def validation_pages(docs_dir: Path) -> dict[str, Path]:
    """The newest GX validation page of each run name (the usage day), relative to `docs_dir`."""
    newest: dict[str, Path] = {}
    for page in sorted((docs_dir / "validations").glob(f"*/*/*/*/{PAGE_NAME}")):
        run_name = page.parts[-3]
        if run_name not in newest or page.parts[-2] > newest[run_name].parts[-2]:
            newest[run_name] = page
    return {name: page.relative_to(docs_dir) for name, page in newest.items()}


def day_runs(con) -> list[dict[str, Any]]:
    """The newest validation of each usage day, with its failed and warned checks (newest day first)."""
    cursor = con.execute(
        """
        with newest as (
            select * from marts.fct_quality_runs
            qualify row_number() over (partition by usage_date order by validated_at desc, run_id desc) = 1
        )
        select newest.usage_date, newest.run_id, newest.validated_at, newest.status, newest.expectation_count,
               newest.failed_count, newest.warning_count,
               list({'check_id': results.check_id, 'severity': results.severity, 'message': results.message}
                    order by results.severity, results.check_id)
                   filter (where results.check_id is not null and not results.success) as problems
        from newest
        left join marts.fct_quality_results as results using (run_id, usage_date)
        group by all
        order by newest.usage_date desc
        """)
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def write_index(con, docs_dir: Path) -> Path:
    """Render docs_dir/index.html: one row per usage day (newest run) linking to its GX page."""
    pages = validation_pages(docs_dir)
    days = []
    for run in day_runs(con):
        page = pages.get(run["usage_date"].isoformat())
        days.append({**run, "page": page.as_posix() if page else None, "problems": run["problems"] or []})
    text = render("quality/index.html.j2", days=days)
    index = docs_dir / "index.html"
    temporary = index.with_suffix(".html.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, index)
    return index


def day_anchor(day: date) -> str:
    """The fragment of a usage day's row in the index (`index.html#day-2026-11-25`)."""
    return f"day-{day.isoformat()}"
