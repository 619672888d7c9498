"""Where the client's base URL and key come from: the Airflow connection, else the OPENROUTER_* variables."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def resolve_credentials(conn_id: str = "openrouter_default") -> tuple[str, str]:
    """(base_url, key): the Airflow connection wins when it exists, else OPENROUTER_* variables."""
    from openrouter_spend.config.settings import DEFAULT_BASE_URL

    base_url = os.environ.get("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL
    key = os.environ.get("OPENROUTER_MANAGEMENT_KEY", "")
    connection = airflow_connection(conn_id)
    if connection is not None:
        host = (connection.host or "").strip()
        if host:
            if "://" not in host:
                scheme = connection.schema or "https"
                port = f":{connection.port}" if connection.port else ""
                host = f"{scheme}://{host}{port}"
            base_url = host
        key = connection.password or key
    return base_url, key


def airflow_connection(conn_id: str):
    """The Airflow connection, or None when Airflow has none by that id (or is not importable)."""
    if not os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") and not _in_airflow_task():
        return None
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends; the env fallback still applies
        log.debug("no Airflow connection %r (%s)", conn_id, type(exc).__name__)
        return None


def _in_airflow_task() -> bool:
    try:
        from airflow.sdk import get_current_context
        get_current_context()
    except Exception:
        return False
    return True

