"""The analysts' published copy is taken after the day's alert deliveries settled, so it tells what was sent."""

from __future__ import annotations

import duckdb
import pytest

pytestmark = pytest.mark.slow

DELIVERY_STATUS = """
    select usage_date, channel, status, count(*) as deliveries
    from marts.fct_alert_deliveries
    group by all
    order by all
"""


def test_the_published_copy_shows_the_newest_days_deliveries_as_sent(emulated_warehouse):
    with duckdb.connect(str(emulated_warehouse.warehouse), read_only=True) as working:
        expected = working.execute(DELIVERY_STATUS).fetchall()
    with duckdb.connect(str(emulated_warehouse.published), read_only=True) as published:
        shown = published.execute(DELIVERY_STATUS).fetchall()
    newest = emulated_warehouse.days[-1]
    newest_rows = [row for row in expected if row[0] == newest]
    # The default world pages on its last day, so the check is not vacuous.
    assert newest_rows, f"the default world delivered nothing on {newest}"
    # Sent, or skipped where a channel has no server configured: nothing left pending for the copy to show.
    assert {row[2] for row in newest_rows} <= {"sent", "skipped"}
    assert "sent" in {row[2] for row in newest_rows}
    assert shown == expected
