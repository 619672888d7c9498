"""Which per-key activity calls may be skipped: only keys that provably had no usage on the day."""

from __future__ import annotations

from datetime import date

import pytest

from openrouter_spend.ingest.extract import ActivityTotals, KeyInfo, chunked, plan_key_activity, skip_reason

DAY = date(2026, 11, 10)


def key(created_at="2026-01-05T10:00:00Z", last_used_at="2026-11-10T23:59:59Z", reports=True) -> KeyInfo:
    return KeyInfo(hash="h", name="k", workspace_id="w", created_at=created_at, last_used_at=last_used_at,
                   reports_last_used=reports, disabled=False)


@pytest.mark.parametrize(("info", "expected"), [
    (key(), None),
    (key(last_used_at="2026-11-10T00:00:00+00:00"), None),
    (key(last_used_at="2026-11-25T08:00:00.123456+00:00"), None),
    (key(last_used_at="2026-11-09T23:59:59.999Z"), "last used 2026-11-09, before the day"),
    (key(last_used_at=None), "never used"),
    (key(created_at="2026-11-11T00:00:00Z", last_used_at="2026-11-12T00:00:00Z"), "created after the day"),
    (key(created_at="2026-11-10T23:00:00Z"), None),
    # Servers that do not report last_used_at give no proof: fetch.
    (key(last_used_at=None, reports=False), None),
    (key(last_used_at="2026-01-01T00:00:00Z", reports=False), None),
])
def test_skip_reason(info, expected):
    assert skip_reason(info, DAY) == expected


def test_null_last_used_proves_nothing_before_tracking_began():
    assert skip_reason(key(created_at="2025-01-01T00:00:00Z", last_used_at=None), date(2025, 12, 1)) is None


def test_plan_splits_keys_and_keeps_every_key_somewhere():
    keys = [KeyInfo.from_item({"hash": f"{i:064x}", "name": f"k{i}", "created_at": "2026-01-01T00:00:00Z",
                               "last_used_at": "2026-11-10T12:00:00Z" if i % 3 else "2026-10-01T00:00:00Z"})
            for i in range(10)]
    fetch, skipped = plan_key_activity(keys, DAY)
    assert len(fetch) == 6 and len(skipped) == 4
    assert set(fetch) | set(skipped) == {k.hash for k in keys}
    assert chunked(fetch, 4) == [fetch[:4], fetch[4:]]


def test_totals_cover_within_float_tolerance_only():
    account = ActivityTotals(usage_usd=1.0000000001, byok_usage_usd=0.5, requests=10)
    assert ActivityTotals(1.0, 0.5, 10).covers(account)
    assert not ActivityTotals(0.99, 0.5, 10).covers(account)
    assert not ActivityTotals(1.0, 0.5, 9).covers(account)
