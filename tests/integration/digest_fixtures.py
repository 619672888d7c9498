"""Shared by the digest, FOCUS and plugin integration tests: the session's emulated 14-day warehouse described
as a realistic run, a per-test copy of its published warehouse, Chromium, and the CI-aware skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
_REALISTIC: dict[str, RealisticRun] = {}


def in_ci() -> bool:
    """True under CI (CI=true), where a missing tool fails the test instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip outside CI, fail in CI."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class RealisticRun:
    """A home filled by `openrouter-spend run` over 14 emulated days."""

    home: Path
    newest_day: date
    topup_day: date | None

    @property
    def published(self) -> Path:
        return self.home / "published" / "warehouse.duckdb"

    def fresh_home(self, target: Path) -> Path:
        """A new OPENROUTER_SPEND_HOME holding only a copy of the published warehouse."""
        (target / "published").mkdir(parents=True)
        shutil.copyfile(self.published, target / "published" / "warehouse.duckdb")
        return target


def realistic_run(world) -> RealisticRun:
    """The session's realistic run: the shared emulated warehouse (tests/conftest.py), described once."""
    if "run" not in _REALISTIC:
        _REALISTIC["run"] = _describe(world.home)
    return _REALISTIC["run"]


def _describe(home: Path) -> RealisticRun:
    with duckdb.connect(str(home / "published" / "warehouse.duckdb"), read_only=True) as con:
        newest = con.execute("select max(as_of_date) from marts.fct_credit_balance").fetchone()[0]
        topup = con.execute("select max(as_of_date) from marts.fct_credit_balance where topup_usd > 0").fetchone()[0]
    return RealisticRun(home, newest, topup)


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of a query against a warehouse file, opened read-only."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def chromium() -> str:
    """Path of Debian's chromium, installed with apt-get when missing (skip, or fail under CI, if that fails)."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        skip_or_fail("chromium is not installed and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            skip_or_fail(f"installing chromium failed ({' '.join(command)}): {result.stderr.strip()[-800:]}")
    found = shutil.which("chromium")
    if not found:
        skip_or_fail("chromium is still not on PATH after apt-get install chromium")
    return found


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars")


def run_chromium(binary: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile folder."""
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout)
