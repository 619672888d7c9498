"""Injectable faults: rules that make the emulator misbehave the way the real API (or its edge) does."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

FAULT_KINDS = (
    "rate_limit",
    "server_error",
    "slow",
    "truncated_json",
    "malformed_json",
    "extra_fields",
    "activity_datetime_dates",
)
SERVER_ERROR_MESSAGES = {
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "Service temporarily unavailable",
    524: "Request timed out. Please try again later.",
    529: "Provider returned error",
}
EXTRA_FIELD = "x_new_field"
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n"
)


@dataclass(frozen=True)
class FaultRule:
    """One fault: which requests it hits (path prefix after /api/v1), how often, and how it misbehaves.

    `every` N hits one matching request in N (the Nth, 2Nth, ...), e.g. a stall on one answer in ten:
    `FaultRule("slow", path_prefix="/generation", every=10, delay_seconds=35)`. `times` counts hits.
    """

    kind: str
    path_prefix: str = ""
    times: int | None = None
    status: int = 500
    retry_after: float = 1.0
    delay_seconds: float = 5.0
    every: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path_prefix, str):
            raise ValueError(f"fault path_prefix must be a string, got {self.path_prefix!r}")
        for name in ("status", "times", "every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"fault {name} must be an integer, got {value!r}")
        for name in ("retry_after", "delay_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"fault {name} must be a non-negative number, got {value!r}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.kind == "server_error" and self.status not in SERVER_ERROR_MESSAGES:
            raise ValueError(f"server_error status must be one of {sorted(SERVER_ERROR_MESSAGES)}, got {self.status}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"fault times must be >= 0 or None, got {self.times}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"fault every must be >= 1 or None, got {self.every}")

    def to_dict(self) -> dict[str, Any]:
        """The rule as the JSON object POST /_emulator/faults accepts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRule:
        """Build a rule from a JSON object, rejecting unknown fields."""
        if not isinstance(raw, dict):
            raise ValueError(f"a fault rule must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
        if "kind" not in raw:
            raise ValueError("a fault rule needs a 'kind'")
        return cls(**raw)


class FaultBook:
    """The active rules with their remaining counts; thread-safe, first matching rule with times left wins.

    A rule with `every` N skips the matching requests between its hits, so they fall through to later rules.
    """

    def __init__(self, rules: list[FaultRule] | None = None):
        self._lock = threading.Lock()
        self._rules: list[list[Any]] = []
        self.replace(rules or [])

    def replace(self, rules: list[FaultRule | dict]) -> None:
        parsed = [r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules = [[rule, rule.times, 0] for rule in parsed]

    def clear(self) -> None:
        self.replace([])

    def take(self, path: str) -> FaultRule | None:
        """The rule that applies to a request for `path` (consuming one of its times), or None."""
        with self._lock:
            for slot in self._rules:
                rule, remaining, seen = slot
                if remaining == 0 or not path.startswith(rule.path_prefix):
                    continue
                slot[2] = seen + 1
                if rule.every is not None and slot[2] % rule.every:
                    continue
                if remaining is not None:
                    slot[1] = remaining - 1
                return rule
        return None

    def snapshot(self) -> list[FaultRule]:
        """The rules with `times` set to what is left of each."""
        with self._lock:
            return [replace(rule, times=remaining) for rule, remaining, _ in self._rules]


def add_extra_fields(payload: Any) -> Any:
    """Add an unknown field to the envelope and to every item of the data, as a newer API version might."""
    if not isinstance(payload, dict):
        return payload
    payload = dict(payload)
    payload[EXTRA_FIELD] = "unexpected"
    data = payload.get("data")
    if isinstance(data, list):
        payload["data"] = [dict(item, **{EXTRA_FIELD: 1}) if isinstance(item, dict) else item for item in data]
    elif isinstance(data, dict):
        inner = dict(data, **{EXTRA_FIELD: 1})
        if isinstance(inner.get("data"), list):
            inner["data"] = [dict(row, **{EXTRA_FIELD: 1}) if isinstance(row, dict) else row for row in inner["data"]]
        payload["data"] = inner
    return payload


def datetime_activity_dates(payload: Any) -> Any:
    """Rewrite /activity dates as 'YYYY-MM-DD 00:00:00', a form seen from the live API."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return payload
    rows = []
    for row in payload["data"]:
        if isinstance(row, dict) and isinstance(row.get("date"), str) and len(row["date"]) == 10:
            row = dict(row, date=row["date"] + " 00:00:00")
        rows.append(row)
    return dict(payload, data=rows)


def truncate(body: bytes) -> bytes:
    """The first half of a body, as a dropped connection would leave it."""
    return body[: len(body) // 2]


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
