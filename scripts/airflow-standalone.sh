#!/usr/bin/env bash
# `make airflow`: Airflow standalone (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1:8080 for the daily DAG.
# Without a management key it serves the bundled emulator on :8090 and points the pipeline at it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# standalone starts its components as `airflow ...` subprocesses found on PATH.
export PATH="$ROOT/.venv/bin:$PATH"
export OPENROUTER_SPEND_HOME="${OPENROUTER_SPEND_HOME:-$ROOT/data}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$OPENROUTER_SPEND_HOME/airflow-standalone}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# A local demo listens on this machine only.
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export GX_ANALYTICS_ENABLED=False
mkdir -p "$AIRFLOW_HOME"

if [[ -z "${OPENROUTER_MANAGEMENT_KEY:-}" && -z "${AIRFLOW_CONN_OPENROUTER_DEFAULT:-}" ]]; then
    EMULATOR_PORT="${OPENROUTER_EMULATOR_PORT:-8090}"
    "$ROOT/.venv/bin/openrouter-spend" emulator --port "$EMULATOR_PORT" &
    EMULATOR_PID=$!
    trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
    export OPENROUTER_BASE_URL="http://127.0.0.1:$EMULATOR_PORT/api/v1"
    export OPENROUTER_MANAGEMENT_KEY="sk-or-v1-emulator-management-0000000000000000"
    echo "No OPENROUTER_MANAGEMENT_KEY set: the DAG will read the bundled emulator at $OPENROUTER_BASE_URL"
    # The emulator's organisation, dated around its anchor; an explicit configuration folder wins.
    if [[ -z "${OPENROUTER_SPEND_CONFIG_DIR:-}" ]]; then
        export OPENROUTER_SPEND_CONFIG_DIR="$OPENROUTER_SPEND_HOME/config/default"
        "$ROOT/.venv/bin/python" -m openrouter_emulator.demo default "$OPENROUTER_SPEND_CONFIG_DIR" >/dev/null
        echo "Configuration: the emulator's organisation in $OPENROUTER_SPEND_CONFIG_DIR"
    fi
fi

"$ROOT/.venv/bin/airflow" db migrate >/dev/null
"$ROOT/.venv/bin/airflow" pools set duckdb 1 "Serialises access to the DuckDB warehouse file" >/dev/null
echo "Airflow UI: http://127.0.0.1:8080 (user admin; password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
"$ROOT/.venv/bin/airflow" standalone
