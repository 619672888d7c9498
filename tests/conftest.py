"""Shared fixtures: an isolated OPENROUTER_SPEND_HOME per test and a running emulator."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads its configuration at import time; keep every test run away from a real ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="openrouter-spend-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture
def spend_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh OPENROUTER_SPEND_HOME for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(home))
    return home


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """A running default-scenario emulator; OPENROUTER_* point at it (and at its organisation's configuration)."""
    from openrouter_emulator import EmulatorServer
    from openrouter_emulator.demo import write_demo_config

    with EmulatorServer(scenario="default") as server:
        config_dir = write_demo_config("default", tmp_path_factory.mktemp("demo-config"), server.anchor_date)
        monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(config_dir))
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", server.management_key)
        monkeypatch.delenv("AIRFLOW_CONN_OPENROUTER_DEFAULT", raising=False)
        yield server
