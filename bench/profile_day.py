"""Where one day's warehouse work goes: every mart, rule, gate dataset and the publish copy timed on its own.

    OPENROUTER_SPEND_HOME=<home> .venv/bin/python bench/profile_day.py YYYY-MM-DD [--explain DIR] [--top N]

Run it on a home that holds history (e.g. after `bench.py --child history-expand`) to see which statements grow
with it. Marts are rebuilt for the days the given day reaches inside a transaction that is rolled back; rules
run their SQL for the day; each gate dataset is built and its checks computed in DuckDB as the gate does
(no Great Expectations run). With --explain, EXPLAIN ANALYZE of the N slowest mart and rule statements is
written to DIR.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("day", type=date.fromisoformat)
    parser.add_argument("--explain", type=Path)
    parser.add_argument("--top", type=int, default=4)
    args = parser.parse_args(argv)
    from openrouter_spend.alerts.rules import evaluate_rule, load_rules
    from openrouter_spend.quality import load_quality_config, metrics, reconcile
    from openrouter_spend.quality.datasets import _catalog, raw_datasets, relation_datasets
    from openrouter_spend.warehouse import connect
    from openrouter_spend.warehouse.marts import (
        MARTS,
        _rebuild_mart,
        affected_days,
        available_days,
    )
    from openrouter_spend.warehouse.publish import publish_warehouse

    timings: list[tuple[str, str, float, str]] = []
    statements: dict[str, tuple[str, list]] = {}
    with connect() as con:
        available = available_days(con)
        con.execute("begin transaction")
        for mart in MARTS:
            days = affected_days(mart, {args.day}, available) if mart.partition_column else []
            started = time.perf_counter()
            rows = _rebuild_mart(con, mart, days, replace_all=False)
            timings.append(("mart", mart.name, time.perf_counter() - started, f"{len(days)} day(s), {rows:,} rows"))
            statements[f"mart.{mart.name}"] = (mart.sql_path.read_text(), days)
        con.execute("rollback")
        for rule in load_rules().rules.values():
            started = time.perf_counter()
            rows = evaluate_rule(con, rule, args.day)
            timings.append(("rule", rule.rule_id, time.perf_counter() - started, f"{len(rows):,} candidates"))
        config = load_quality_config()
        live = _catalog(con)
        for layer in ("staging", "marts"):
            for relation in sorted(name for name in live if name.startswith(f"{layer}.")):
                started = time.perf_counter()
                datasets = relation_datasets(con, layer, args.day, config, False, {relation: live[relation]})
                checks = sum(len(metrics.measure(con, dataset)) for dataset in datasets)
                timings.append(("gate checks", relation, time.perf_counter() - started, f"{checks:,} checks in SQL"))
        for name, build in (("raw", lambda: raw_datasets(con, args.day, config, False)),
                            ("reconciliation", lambda: reconcile.reconciliation_datasets(con, args.day, config)),
                            ("freshness", lambda: reconcile.freshness_datasets(con, args.day, config))):
            started = time.perf_counter()
            datasets = build()
            checks = sum(len(metrics.measure(con, dataset)) for dataset in datasets)
            frame_rows = sum(len(d.frame) for d in datasets if d.frame is not None)
            timings.append(("gate checks", f"({name} datasets)", time.perf_counter() - started,
                            f"{checks:,} checks, {frame_rows:,} frame rows"))
        if args.explain:
            args.explain.mkdir(parents=True, exist_ok=True)
            slowest = sorted((t for t in timings if t[0] == "mart"), key=lambda t: -t[2])[:args.top]
            con.execute("begin transaction")
            for _, name, _, _ in slowest:
                sql, days = statements[f"mart.{name}"]
                con.execute("set variable mart_days = cast(? as date[])", [days])
                plan = con.execute(f"explain analyze {sql}").fetchall()
                (args.explain / f"mart.{name}.txt").write_text("\n".join(row[-1] for row in plan))
            con.execute("rollback")
    started = time.perf_counter()
    publish_warehouse()
    size = Path(publish_warehouse.__globals__["settings"].paths().warehouse).stat().st_size
    timings.append(("publish", "file copy + check", time.perf_counter() - started, f"{size / 2**20:,.0f} MiB file"))
    for kind, name, seconds, detail in sorted(timings, key=lambda t: -t[2]):
        print(f"{seconds:8.2f} s  {kind:<10} {name:<42} {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
