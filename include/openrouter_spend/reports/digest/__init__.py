"""The daily finance digest: `write_digest(day)` writes $OPENROUTER_SPEND_HOME/digests/<day>/.

The folder holds digest.html (self-contained, charts embedded), digest.md, five CSV tables, the charts as PNG
and summary.json (the headline numbers, for the Airflow "Spend" view). It reads the analysts' published copy
of the warehouse (read-only, so it never waits for or blocks a warehouse writer), or the live warehouse,
read-only, when nothing was published yet. Equal marts give byte-identical files: no wall-clock time, no
absolute paths and pinned PNG metadata. `mail_digest(day)` e-mails the written folder (digest/mail.py), so a
failed e-mail is retried without rendering again; `write_day` does both and the FOCUS export in one call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def source_path(source: str | Path = "published") -> tuple[Path, str]:
    """The warehouse file the digest reads and how the digest names it.

    "published" (default): the analysts' copy, falling back to the live file when nothing was published;
    "live": the live warehouse (opened read-only, so run it where no writer is active: the duckdb pool);
    a Path: that file.
    """
    paths = settings.paths()
    published = paths.published / "warehouse.duckdb"
    if source == "published" and published.exists():
        return published, "published warehouse copy (published/warehouse.duckdb)"
    if source in ("published", "live"):
        return paths.warehouse, "live warehouse (warehouse.duckdb, opened read-only)"
    return Path(source), f"warehouse file {Path(source).name}"


def render_day(con, day: date, source_label: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the day's digest folder as {relative name: bytes}, plus the summary, from an open connection."""
    from openrouter_spend.reports.digest import charts as chart_module
    from openrouter_spend.reports.digest import html, markdown, tables
    from openrouter_spend.reports.digest.data import collect

    data = collect(con, day, source_label)
    charts = chart_module.render_all(data)
    csv_tables = tables.build(data)
    files: dict[str, bytes] = {
        "digest.html": html.render(data, charts, csv_tables).encode("utf-8"),
        "digest.md": markdown.render(data, charts, csv_tables).encode("utf-8"),
    }
    files.update({table.name: table.render() for table in csv_tables})
    files.update({f"charts/{chart.name}": chart.png for chart in charts})
    summary = _summary(data, sorted([*files, SUMMARY_FILE]))
    files[SUMMARY_FILE] = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return files, summary


def _summary(data, names: list[str]) -> dict[str, Any]:
    from openrouter_spend.reports.digest.savings import summary as savings_summary

    balance = data.balance or {}
    savings = savings_summary(data.savings)

    def rounded(value):
        return None if value is None else round(float(value), 6)

    return {
        "day": data.day.isoformat(),
        "has_data": data.has_data,
        "spend_usd": rounded(data.totals["spend_usd"]),
        "byok_spend_usd": rounded(data.totals["byok_spend_usd"]),
        "burn_7d_avg_usd": rounded(balance.get("burn_7d_avg_usd")),
        "balance_usd": rounded(balance.get("balance_usd")),
        "runway_days": rounded(balance.get("runway_days")),
        "month_to_date_usd": rounded(data.month["month_to_date_usd"]),
        "findings": [{"severity": f.severity, "text": f.text} for f in data.findings],
        "savings_opportunities": len(data.savings),
        "savings_monthly_usd": rounded(savings["total_usd"]),
        "savings_text": savings["total_text"],
        "alerts_state": data.alerts_state,
        "alerts_fired": sum(1 for a in data.alerts if a.get("status") == "fired"),
        "quality_state": data.quality_state,
        "files": names,
    }


def _replace_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write the files into a fresh folder and swap it in, so readers never see half a digest."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.new")
    retired = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    for name, content in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if folder.exists():
        os.replace(folder, retired)
    os.replace(staging, folder)
    shutil.rmtree(retired, ignore_errors=True)


def subject(summary: dict[str, Any]) -> str:
    """The e-mail subject: day, spend against the 7-day average, runway."""
    from openrouter_spend import rendering

    return rendering.render("digest/subject.header.j2", summary=summary)


def write_digest(day: date, *, source: str | Path = "published") -> dict[str, Any]:
    """Write digests/<day>/ from the warehouse (read-only), swapped in whole."""
    from openrouter_spend.warehouse import connect

    started = time.monotonic()
    path, label = source_path(source)
    if not path.exists():
        raise FileNotFoundError(f"no warehouse to build the {day} digest from at {path}")
    with connect(path, read_only=True) as con:
        files, summary = render_day(con, day, label)
    folder = settings.paths().digests / day.isoformat()
    _replace_folder(folder, files)
    result = {
        "day": day.isoformat(),
        "folder": str(folder),
        "source": label,
        "files": sorted(files),
        "digest_sha256": hashlib.sha256(files["digest.html"]).hexdigest(),
        "spend_usd": summary["spend_usd"],
        "findings": len(summary["findings"]),
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("wrote the %s digest to %s (%d files) in %.1fs", day, folder, len(files), result["seconds"])
    return result


def mail_digest(day: date) -> dict[str, Any]:
    """E-mail the day's written digest if configured; a retry sends the same files without re-rendering."""
    from openrouter_spend.reports.digest.mail import send_digest

    folder = settings.paths().digests / day.isoformat()
    summary_path = folder / SUMMARY_FILE
    if not summary_path.is_file():
        raise FileNotFoundError(f"no {day} digest to e-mail at {folder} (write_digest writes it)")
    email = send_digest(folder, day, subject(json.loads(summary_path.read_text())))
    log.info("the %s digest e-mail: %s", day, email["status"])
    return email


def write_day(day: date, *, source: str | Path = "published", send_email: bool = True) -> dict[str, Any]:
    """Write digests/<day>/ and focus/<day>.csv/.parquet, then e-mail the digest if configured (one call)."""
    from openrouter_spend.reports import focus

    result = write_digest(day, source=source)
    result["focus"] = focus.export_day(day, source=source)
    result["email"] = mail_digest(day) if send_email else {"status": "disabled"}
    return result


def list_digests(home: Path | None = None) -> list[dict[str, Any]]:
    """Every digest folder with its summary, newest day first (used by the Airflow Spend view)."""
    digests = (Path(home) / "digests") if home else settings.paths().digests
    found = []
    for summary_path in digests.glob(f"????-??-??/{SUMMARY_FILE}"):
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append({**summary, "folder": str(summary_path.parent)})
    return sorted(found, key=lambda item: item["day"], reverse=True)
