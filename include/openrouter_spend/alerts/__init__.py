"""Alerts: decision rules, the alert ledger, delivery, message rendering, channels and failure notifications.

The names below are the stage's API (the DAG's evaluate and emit tasks); the rest lives in its modules.
"""

from openrouter_spend.alerts.delivery import AlertDeliveryFailed, emit_day
from openrouter_spend.alerts.ledger import evaluate_day

__all__ = ["AlertDeliveryFailed", "emit_day", "evaluate_day"]
