"""DuckDB's memory limit for large statements: its share of the process budget, within the connection's."""

from __future__ import annotations

import duckdb
import psutil
import pytest

from openrouter_spend.warehouse import memory


def test_sizes_parse_in_both_units_and_a_bad_one_is_named():
    assert memory.parse_size("1GiB") == 2**30
    assert memory.parse_size("700MB") == 700 * 10**6
    assert memory.parse_size("667.5 MiB") == int(667.5 * 2**20)
    with pytest.raises(ValueError, match="'lots'"):
        memory.parse_size("lots")


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("set memory_limit = '700MB'")
    yield connection
    connection.close()


def test_the_limit_is_what_the_budget_leaves_beside_the_process_less_room_outside_the_pool(con, monkeypatch):
    outside = psutil.Process().memory_info().rss
    monkeypatch.setenv(memory.BUDGET_ENV, f"{outside + 500 * 2**20}B")
    limit = memory.limit_within_budget(con)
    # 500 MiB left beside the process, of which a tenth is kept for DuckDB's allocations outside its pool; the
    # process's own memory moves a little between the two readings
    assert limit == pytest.approx(450 * 2**20, abs=32 * 2**20)


def test_a_large_budget_keeps_the_connection_limit_or_the_ceiling(con, monkeypatch):
    monkeypatch.setenv(memory.BUDGET_ENV, "64GiB")
    assert memory.limit_within_budget(con) == memory.parse_size("667.5 MiB")
    assert memory.limit_within_budget(con, "768MB") == 768 * 10**6


def test_a_process_past_its_budget_gets_half_the_limit_and_a_warning(con, monkeypatch, caplog):
    monkeypatch.setenv(memory.BUDGET_ENV, "1MB")
    assert memory.limit_within_budget(con) == memory.parse_size("667.5 MiB") // 2
    assert "outside DuckDB" in caplog.text


def test_the_block_runs_under_the_lowered_limit_and_the_limit_comes_back(con, monkeypatch):
    monkeypatch.setenv(memory.BUDGET_ENV, "1MB")
    with memory.within_process_budget(con):
        inside = con.execute("select current_setting('memory_limit')").fetchone()[0]
    assert memory.parse_size(inside) < memory.parse_size("667.5 MiB")
    assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "667.5 MiB"


def test_a_bad_budget_is_an_error_naming_the_setting(monkeypatch):
    monkeypatch.setenv(memory.BUDGET_ENV, "plenty")
    with pytest.raises(ValueError, match=memory.BUDGET_ENV):
        memory.process_budget_bytes()
