#!/usr/bin/env bash
# `make airflow`: Airflow standalone (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1:8080 for the daily DAG.
# It serves the metadata database `openrouter-spend run` records its runs in ($OPENROUTER_SPEND_HOME/airflow), so
# the UI shows them. Without a management key it serves the bundled emulator on :8090 and points the pipeline at it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# standalone starts its components as `airflow ...` subprocesses found on PATH.
export PATH="$ROOT/.venv/bin:$PATH"
export OPENROUTER_SPEND_HOME="${OPENROUTER_SPEND_HOME:-$ROOT/data}"
mkdir -p "$OPENROUTER_SPEND_HOME"

# One writer per home: hold the lock `openrouter-spend run` takes (the kernel drops it when this script ends).
LOCK="$OPENROUTER_SPEND_HOME/.lock"
exec 9>>"$LOCK"
if ! flock -n 9; then
    echo "make airflow: $OPENROUTER_SPEND_HOME is in use: $(cat "$LOCK")" >&2
    exit 3
fi
printf '{"pid": %d, "host": "%s", "command": "airflow standalone", "started_at": "%s"}' \
    "$$" "$(hostname)" "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" > "$LOCK"

# The same Airflow home, database, DAG and plugin folders as `openrouter-spend run` (migrated if needed).
OPENROUTER_SPEND_AIRFLOW_LOG_LEVEL="${OPENROUTER_SPEND_AIRFLOW_LOG_LEVEL:-INFO}"
export OPENROUTER_SPEND_AIRFLOW_LOG_LEVEL
eval "$("$ROOT/.venv/bin/python" -m openrouter_spend.runner)"
# A local demo listens on this machine only; tasks reach the execution API on the same host and port.
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://$AIRFLOW__API__HOST:${AIRFLOW__API__PORT:-8080}/execution/}"

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

echo "Airflow UI: http://$AIRFLOW__API__HOST:${AIRFLOW__API__PORT:-8080} (user admin; password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
"$ROOT/.venv/bin/airflow" standalone
