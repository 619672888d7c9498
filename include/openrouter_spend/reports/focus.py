"""FOCUS 1.0 export of one UTC day (CSV and Parquet), and its check with the FinOps Foundation's validator.

The rows come from sql/exports/focus_1_0.sql (its header explains the money model: top-ups are Purchase
rows, usage paid from prepaid credits has BilledCost 0 and EffectiveCost = credits spent, BYOK inference is
only in x_ columns). The column names are those focus-validator 1.0.0 checks for FOCUS 1.0 (`Provider`,
`Publisher`, `InvoiceIssuer`, `ResourceID`). In the CSV, a text cell that a spreadsheet would run as a formula
(a key named "=HYPERLINK(...)") starts with a single quote; the Parquet file keeps every value as it is.

focus-validator 1.0.0 needs pandas < 3 (this project runs pandas 3), so it lives in its own virtual
environment, created on first use by `ensure_validator()` under the user cache (or
$OPENROUTER_SPEND_FOCUS_VALIDATOR_VENV) and reused afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings

FOCUS_VERSION = "1.0"
VALIDATOR_REQUIREMENTS = (
    "focus-validator==1.0.0",
    # multimethod 1.11 changed the dispatch API pandera 0.17 (pinned by the validator) relies on.
    "multimethod<1.11",
    # Parquet support; the validator allows any pyarrow but pins numpy < 2, and pyarrow 21+ needs numpy 2.
    "pyarrow==20.0.0",
)
# Checks of focus-validator 1.0.0 that cannot pass on a FOCUS 1.0 file, skipped through the validator's own
# override file; the intent of each is enforced by `_DRIVER` instead.
SKIPPED_CHECKS = {
    "SkuPriceId_Nullable": "its SQL reads ChargeType, the FOCUS 0.5 name of ChargeCategory, which a 1.0 file "
                           "does not have (KeyError on every 1.0 file); its intent, SkuPriceId set on Usage and "
                           "Purchase rows, is checked separately",
}
DEFAULT_BILLING_ACCOUNT_ID = "openrouter"
DEFAULT_BILLING_ACCOUNT_NAME = "OpenRouter"


class FocusValidationError(RuntimeError):
    """The export does not conform: the message lists each failed check."""


class ValidatorUnavailable(RuntimeError):
    """The validator's virtual environment could not be created (no package index, no uv)."""


def export_sql() -> str:
    """The FOCUS 1.0 SELECT (sql/exports/focus_1_0.sql)."""
    return (settings.sql_dir() / "exports" / "focus_1_0.sql").read_text()


def billing_account() -> tuple[str, str]:
    """BillingAccountId and BillingAccountName: OPENROUTER_SPEND_FOCUS_ACCOUNT_ID/_NAME, default 'openrouter'."""
    return (os.environ.get("OPENROUTER_SPEND_FOCUS_ACCOUNT_ID") or DEFAULT_BILLING_ACCOUNT_ID,
            os.environ.get("OPENROUTER_SPEND_FOCUS_ACCOUNT_NAME") or DEFAULT_BILLING_ACCOUNT_NAME)


def _prepare(con, day: date) -> str:
    account_id, account_name = billing_account()
    con.execute("set variable focus_day = cast(? as date)", [day])
    con.execute("set variable focus_billing_account_id = ?", [account_id])
    con.execute("set variable focus_billing_account_name = ?", [account_name])
    return export_sql().strip().rstrip(";")


def rows(con, day: date) -> list[dict[str, Any]]:
    """The day's FOCUS rows as dicts (for tests and callers that want them in memory)."""
    cursor = con.execute(_prepare(con, day))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def spreadsheet_safe(con, query: str) -> str:
    """The query with every text column neutralised for spreadsheets (escaping.csv_cell); other columns as they are."""
    from openrouter_spend.escaping import csv_cell_sql

    columns = con.execute(f"describe ({query})").fetchall()
    selected = []
    for name, column_type, *_ in columns:
        quoted = '"' + name.replace('"', '""') + '"'
        selected.append(f"{csv_cell_sql(quoted)} as {quoted}" if column_type == "VARCHAR" else quoted)
    return f"select {', '.join(selected)} from ({query})"


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_day(con, day: date, folder: Path | None = None) -> dict[str, Any]:
    """Write focus/<day>.csv and focus/<day>.parquet from an open warehouse connection; returns paths and totals."""
    folder = folder or settings.paths().home / "focus"
    folder.mkdir(parents=True, exist_ok=True)
    query = _prepare(con, day)
    csv_path, parquet_path = folder / f"{day.isoformat()}.csv", folder / f"{day.isoformat()}.parquet"
    totals = con.execute(
        f"select count(*), coalesce(sum(BilledCost), 0), coalesce(sum(EffectiveCost), 0), "
        f"count(*) filter (where ChargeCategory = 'Purchase'), coalesce(sum(x_byok_provider_billed_cost_usd), 0) "
        f"from ({query})").fetchone()
    for path, select, options in (
            (csv_path, spreadsheet_safe(con, query), "format csv, header true, timestampformat '%Y-%m-%dT%H:%M:%SZ'"),
            (parquet_path, query, "format parquet, compression zstd")):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            con.execute(f"copy ({select}) to {_quoted(temporary)} ({options})")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return {"csv": str(csv_path), "parquet": str(parquet_path), "rows": int(totals[0]),
            "billed_cost_usd": float(totals[1]), "effective_cost_usd": float(totals[2]),
            "purchase_rows": int(totals[3]), "byok_provider_billed_cost_usd": float(totals[4])}


# ----- validation -------------------------------------------------------------------------------------------

def export_day(day: date, *, source: str | Path = "published") -> dict[str, Any]:
    """Write focus/<day>.csv and .parquet from the warehouse (read-only: the published copy by default)."""
    from openrouter_spend.reports.digest import source_path
    from openrouter_spend.warehouse import connect

    path, _label = source_path(source)
    if not path.exists():
        raise FileNotFoundError(f"no warehouse to export the {day} FOCUS rows from at {path}")
    with connect(path, read_only=True) as con:
        return write_day(con, day, settings.paths().home / "focus")


def validator_venv() -> Path:
    """Where the validator's virtual environment lives (created by ensure_validator)."""
    configured = os.environ.get("OPENROUTER_SPEND_FOCUS_VALIDATOR_VENV")
    if configured:
        return Path(configured).resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openrouter-spend"
    return cache / "focus-validator-1.0.0"


def _uv() -> str | None:
    sibling = Path(sys.executable).with_name("uv")
    return str(sibling) if sibling.exists() else shutil.which("uv")


def ensure_validator(venv: Path | None = None) -> Path:
    """Create (once) the virtual environment with focus-validator 1.0.0; returns its Python. Idempotent, locked."""
    venv = venv or validator_venv()
    python = venv / "bin" / "python"
    marker = venv / ".openrouter-spend-installed"
    wanted = "\n".join(VALIDATOR_REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == wanted and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        uv = _uv()
        if uv:
            commands = [[uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                        [uv, "pip", "install", "--quiet", "--python", str(python), *VALIDATOR_REQUIREMENTS]]
        else:
            commands = [[sys.executable, "-m", "venv", str(venv)],
                        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                         *VALIDATOR_REQUIREMENTS]]
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise ValidatorUnavailable(f"could not create the FOCUS validator environment in {venv} "
                                           f"({' '.join(command[:3])}): {result.stderr.strip()[-1500:]}")
        marker.write_text(wanted)
    return python


# Runs inside the validator's environment: validates one file and prints a JSON report. It changes into the
# folder holding the focus_validator package because 1.0.0 opens its currency list by a relative path.
_DRIVER = r"""
import json, os, sys
from pathlib import Path
import focus_validator
from focus_validator.validator import Validator
data_file, override_file, version = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(Path(focus_validator.__file__).resolve().parents[1])
validator = Validator(data_filename=data_file, output_destination=None, output_type="console",
                      rules_version=version, override_filename=override_file)
validator.load()
result = validator.spec_rules.validate(validator.focus_data)
checks = [{"check": name, "column": item.column_id, "status": item.status.value,
           "error": item.error} for name, item in sorted(result.checklist.items())]
failures = []
if result.failure_cases is not None:
    for _, row in result.failure_cases.iterrows():
        failures.append({"check": str(row["Check Name"]), "column": str(row["Column"]),
                         "description": str(row["Description"]).strip(), "values": str(row["Values"])[:200]})
data = validator.focus_data
intent = []
if "SkuPriceId" in data and "ChargeCategory" in data:
    missing = data[data["ChargeCategory"].isin(["Usage", "Purchase", "Refund"]) & data["SkuPriceId"].isna()]
    if len(missing):
        intent.append({"check": "SkuPriceId_Nullable (intent)", "column": "SkuPriceId",
                       "description": "SkuPriceId must be set on Usage, Purchase and Refund rows",
                       "values": f"{len(missing)} rows"})
print(json.dumps({"rows": int(len(data)), "columns": list(map(str, data.columns)), "checks": checks,
                  "failures": failures + intent}))
"""


@dataclass
class ValidationReport:
    """What focus-validator said about one file."""

    path: Path
    rows: int
    columns: list[str]
    checks: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No failed and no errored check."""
        return not self.failures and not [c for c in self.checks if c["status"] in ("failed", "errored")]

    def summary(self) -> str:
        """One line per problem, or a one-line success."""
        if self.passed:
            counts: dict[str, int] = {}
            for check in self.checks:
                counts[check["status"]] = counts.get(check["status"], 0) + 1
            return (f"{self.path.name}: FOCUS {FOCUS_VERSION} valid ({self.rows} rows; "
                    + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")")
        problems = [f"{f['check']} on {f['column']}: {f['description']} (e.g. {f['values']})" for f in self.failures]
        problems += [f"{c['check']} on {c['column']}: {c['status']} {c.get('error') or ''}".strip()
                     for c in self.checks if c["status"] in ("failed", "errored")
                     and not any(f["check"] == c["check"] for f in self.failures)]
        return f"{self.path.name} is not valid FOCUS {FOCUS_VERSION}:\n  " + "\n  ".join(problems)


def validate_file(path: Path, venv: Path | None = None) -> ValidationReport:
    """Run focus-validator 1.0.0 (FOCUS 1.0 rules) on a CSV or Parquet export; the report says pass or why not."""
    python = ensure_validator(venv)
    path = Path(path).resolve()
    override = path.with_name(f".{path.name}.focus-overrides.yaml")
    override.write_text(json.dumps({"overrides": sorted(SKIPPED_CHECKS)}))
    try:
        result = subprocess.run([str(python), "-c", _DRIVER, str(path), str(override), FOCUS_VERSION],
                                capture_output=True, text=True)
    finally:
        override.unlink(missing_ok=True)
    if result.returncode != 0:
        raise FocusValidationError(f"focus-validator could not check {path}: {result.stderr.strip()[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return ValidationReport(path, report["rows"], report["columns"], report["checks"], report["failures"],
                            dict(SKIPPED_CHECKS))


def validate_day(day: date, folder: Path | None = None, venv: Path | None = None) -> list[ValidationReport]:
    """Validate focus/<day>.csv and .parquet; raises FocusValidationError listing every failure."""
    folder = folder or settings.paths().home / "focus"
    reports = [validate_file(folder / f"{day.isoformat()}.{suffix}", venv) for suffix in ("csv", "parquet")]
    failed = [report for report in reports if not report.passed]
    if failed:
        raise FocusValidationError("\n".join(report.summary() for report in failed))
    return reports


def main(argv: list[str] | None = None) -> int:
    """`python -m openrouter_spend.reports.focus FILE...`: validate exports, exit 1 when any is not valid."""
    paths = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print("usage: python -m openrouter_spend.reports.focus FILE.csv|FILE.parquet ...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        report = validate_file(path)
        print(report.summary())
        status |= 0 if report.passed else 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
