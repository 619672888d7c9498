"""Benchmark: one day of 1,000,000 app request-log lines through our ingestion, DuckDB's own read_json and a naive
Python loop, side by side, plus the whole per-request build of that day.

    .venv/bin/python bench/bench_requests.py [--lines 1000000] [--repeat 3] [--workdir DIR]

Each measurement runs in a fresh subprocess; peak memory is that process's ru_maxrss (DuckDB allocates outside
Python, so tracemalloc would miss it), wall time is measured inside it. Lines/s = lines ÷ wall time. The
figures are medians over --repeat runs (the machine is shared, so single runs are noisy). Targets (issue 4):
ingestion within 2× of DuckDB's read_json of the same file, peak memory under 1 GiB, and the whole per-request
build of the day under 60 s. The /generation calls are not part of the build figure: they are bounded by the
daily call budget and the API's rate limit, not by this machine, and run outside the warehouse pool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

DAY = date(2026, 11, 24)
TARGET_RATIO = 2.0
TARGET_PEAK_MIB = 1024
TARGET_BUILD_SECONDS = 60


def generate(path: Path, lines: int, metadata_share: float) -> None:
    """Write a realistic request-log day with DuckDB (the generator is not what is measured)."""
    import duckdb

    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    con.execute(
        f"""
        copy (
            with
            rows as (
                select
                    i,
                    hash(i, 'meta') % 10000 < {int(metadata_share * 10000)} as logs_metadata,
                    hash(i, 'fallback') % 100 < 4 as fell_back,
                    ['openai/gpt-4.1-mini', 'anthropic/claude-sonnet-4', 'google/gemini-2.5-flash',
                     'openai/gpt-4.1'][1 + (hash(i, 'model') % 4)::integer] as model,
                    ['search', 'support-bot', 'data-platform', 'growth-experiments', 'ml-evaluation'][1 + (i % 5)::integer]
                        as project,
                    100 + hash(i, 'prompt') % 4000 as prompt_tokens,
                    20 + hash(i, 'completion') % 800 as completion_tokens
                from range({lines}) as t(i)
            )
            select
                'gen-' || (1795478400 + i * 86400 // {lines}) || '-' || lpad(i::varchar, 20, '0') as generation_id,
                strftime(timestamp '{DAY}' + to_microseconds(i * 86400000000 // {lines}), '%Y-%m-%dT%H:%M:%S.%f')
                    || '+00:00' as created_at,
                sha256('key-' || (i % 40)) as api_key_hash,
                project,
                project || '-workflow-' || (i % 7) as workflow,
                model as requested_model,
                hash(i, 'accepted') % 10 <> 0 as accepted,
                case when i % 97 = 5 then 'gen-' || (1795478400 + (i - 1) * 86400 // {lines}) || '-'
                    || lpad((i - 1)::varchar, 20, '0') end as retry_of,
                md5(project || (i // 3)) as request_fingerprint,
                case when logs_metadata then {{
                    'requested': model, 'strategy': 'direct', 'region': 'iad',
                    'summary': 'available=2, selected=' || case when fell_back then 'Azure' else 'OpenAI' end,
                    'attempt': case when fell_back then 2 else 1 end, 'is_byok': false,
                    'endpoints': {{'total': 2, 'available': [
                        {{'provider': 'OpenAI', 'model': model, 'selected': not fell_back}},
                        {{'provider': 'Azure', 'model': model, 'selected': fell_back}}]}},
                    'attempts': case when fell_back then [
                        {{'provider': 'OpenAI', 'model': model, 'status': 429}},
                        {{'provider': 'Azure', 'model': model, 'status': 200}}] end
                }} end as openrouter_metadata,
                case when logs_metadata then {{
                    'prompt_tokens': prompt_tokens, 'completion_tokens': completion_tokens,
                    'total_tokens': prompt_tokens + completion_tokens, 'cost': (prompt_tokens * 0.4 +
                    completion_tokens * 1.6) / 1e6, 'is_byok': false
                }} end as usage
            from rows
        ) to '{path}' (format json)
        """
    )


# ----- measurements (each runs in its own process) --------------------------------------------------------

def measure_raw(file: Path, work: Path) -> dict:
    """DuckDB's own read_json of the file, loaded into a table of a fresh database (auto-detected types)."""
    import duckdb

    con = duckdb.connect(str(work / "raw.duckdb"))
    started = time.perf_counter()
    con.execute(f"create table lines as select * from read_json('{file}', format = 'newline_delimited')")
    con.execute("checkpoint")
    rows = con.execute("select count(*) from lines").fetchone()[0]
    return {"seconds": time.perf_counter() - started, "rows": rows}


def measure_ingest(file: Path, work: Path) -> dict:
    """openrouter_spend.ingest.requests_log.ingest of the file into a fresh, migrated warehouse."""
    from openrouter_spend.ingest import requests_log
    from openrouter_spend.warehouse import connect, migrate

    root = _landing(file, work)
    with connect(work / "warehouse.duckdb") as con:
        migrate(con)
        started = time.perf_counter()
        result = requests_log.ingest(con, root, quarantine_dir=work / "quarantine")
        con.execute("checkpoint")
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result["loaded_rows"], "quarantined": result["quarantined_rows"]}


def measure_naive(file: Path, work: Path) -> dict:
    """The baseline: a Python loop over json.loads, checking the required fields, then one bulk insert."""
    import duckdb
    import pandas as pd

    started = time.perf_counter()
    rows, bad = [], 0
    with file.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(item, dict) or not isinstance(item.get("generation_id"), str) \
                    or not isinstance(item.get("created_at"), str):
                bad += 1
                continue
            metadata = item.get("openrouter_metadata")
            usage = item.get("usage")
            rows.append((item["generation_id"], item["created_at"], item.get("api_key_hash"), item.get("project"),
                         item.get("workflow"), item.get("requested_model"), item.get("accepted"),
                         item.get("retry_of"), json.dumps(metadata) if metadata else None,
                         json.dumps(usage) if usage else None))
    frame = pd.DataFrame(rows, columns=["generation_id", "created_at", "api_key_hash", "project", "workflow",
                                        "requested_model", "accepted", "retry_of", "openrouter_metadata", "usage"])
    con = duckdb.connect(str(work / "naive.duckdb"))
    con.register("frame", frame)
    con.execute("create table lines as select * exclude (created_at), cast(created_at as timestamptz) as created_at "
                "from frame")
    con.execute("checkpoint")
    return {"seconds": time.perf_counter() - started, "rows": len(rows), "quarantined": bad}


def measure_build(file: Path, work: Path) -> dict:
    """The whole per-request build of the day: ingest, plan the /generation calls, load, staging, marts.

    The warehouse connection gets DuckDB's memory_limit from BENCH_DUCKDB_MEMORY_LIMIT (the value proposed for
    warehouse.connect; without a limit DuckDB keeps up to 80% of RAM as cache and the peak means little).
    """
    os.environ["OPENROUTER_SPEND_HOME"] = str(work / "home")
    from openrouter_spend.ingest import enrich, enrich_plan, requests_log
    from openrouter_spend.warehouse import build_staging, connect, migrate
    from openrouter_spend.warehouse.marts import build_marts

    root = _landing(file, work / "home" / "landing")
    timings = {}
    started = time.perf_counter()
    with connect() as con:
        if os.environ.get("BENCH_DUCKDB_MEMORY_LIMIT"):
            con.execute(f"set memory_limit = '{os.environ['BENCH_DUCKDB_MEMORY_LIMIT']}'")
        migrate(con)
        build_staging(con)
        mark = time.perf_counter()
        result = requests_log.ingest(con, root)
        timings["ingest"] = time.perf_counter() - mark
        mark = time.perf_counter()
        plan = enrich_plan.plan_enrichment(con, DAY, "bench", enrich.EnrichmentSettings())
        enrich.load_enrichment(con, DAY, "bench")
        timings["plan_and_load_enrichment"] = time.perf_counter() - mark
        mark = time.perf_counter()
        counts = build_marts(con, [DAY])
        timings["marts"] = time.perf_counter() - mark
    return {"seconds": time.perf_counter() - started, "rows": result["loaded_rows"], "steps": timings,
            "calls_planned": plan["calls_planned"], "not_sampled": plan["not_sampled"],
            "fct_generations": counts["fct_generations"], "fct_fallback_daily": counts["fct_fallback_daily"]}


def _landing(file: Path, directory: Path) -> Path:
    root = directory / "requests"
    root.mkdir(parents=True, exist_ok=True)
    target = root / file.name
    if not target.exists():
        try:
            os.link(file, target)
        except OSError:
            shutil.copyfile(file, target)
    return root


MEASUREMENTS = {"raw": measure_raw, "ingest": measure_ingest, "naive": measure_naive, "build": measure_build}


def _run_child(kind: str, file: Path, scratch: Path) -> dict:
    """Run one measurement in a fresh process; add its peak resident memory from the kernel's accounting."""
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    process = subprocess.Popen([sys.executable, __file__, "--measure", kind, "--file", str(file),
                                "--workdir", str(work)], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(work, ignore_errors=True)
    if process.returncode != 0:
        raise SystemExit(f"measurement {kind} failed (exit {process.returncode})")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return result


def _median(runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**best, "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs), "runs": [round(r["seconds"], 2) for r in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--metadata-share", type=float, default=0.6,
                        help="share of lines that carry openrouter_metadata and usage (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, median reported")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--duckdb-memory-limit", default="700MB",
                        help="DuckDB memory_limit of the build's warehouse connection (default %(default)s)")
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(MEASUREMENTS[args.measure](args.file, args.workdir), default=str))
        return 0

    os.environ["BENCH_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory_limit
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="bench-requests-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        clean, dirty = scratch / "requests-day.jsonl", scratch / "requests-day-with-bad-lines.jsonl"
        started = time.perf_counter()
        generate(clean, args.lines, args.metadata_share)
        shutil.copyfile(clean, dirty)
        with dirty.open("a") as handle:
            handle.writelines(f'{{"generation_id": "broken-{i}", "created_at": "not a time"}}\n' for i in range(100))
        size_mb = clean.stat().st_size / 1e6
        print(f"generated {args.lines:,} lines ({size_mb:,.0f} MB, {args.metadata_share:.0%} with openrouter_metadata)"
              f" in {time.perf_counter() - started:.1f}s; cpus {os.cpu_count()}; median of {args.repeat} run(s); "
              f"build DuckDB memory_limit {args.duckdb_memory_limit}\n")
        results = {}
        for _ in range(args.repeat):  # interleaved, so load spikes on the shared machine hit both alike
            for kind in ("raw", "ingest"):
                results.setdefault(kind, []).append(_run_child(kind, clean, scratch))
        results = {kind: _median(runs) for kind, runs in results.items()}
        results["ingest_bad"] = _median([_run_child("ingest", dirty, scratch)])
        results["naive"] = _median([_run_child("naive", clean, scratch)])
        results["build"] = _median([_run_child("build", clean, scratch)])
        labels = {
            "raw": "DuckDB read_json -> table (raw)",
            "ingest": "requests_log.ingest",
            "ingest_bad": "requests_log.ingest, +100 bad lines",
            "naive": "naive Python json.loads loop",
            "build": "whole per-request build",
        }
        print(f"{'measurement':<38} {'wall s':>8} {'lines/s':>12} {'peak MiB':>9}  runs")
        for kind, label in labels.items():
            r = results[kind]
            print(f"{label:<38} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>12,.0f} {r['peak_mib']:>9.0f}  "
                  f"{r.get('runs')}")
        ratio = results["ingest"]["seconds"] / results["raw"]["seconds"]
        build = results["build"]
        print("\nbuild steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in build["steps"].items())
              + f"; /generation calls planned {build['calls_planned']:,} (budget), not sampled "
              f"{build['not_sampled']:,}; fct_generations {build['fct_generations']:,} rows")
        peak = max(results[kind]["peak_mib"] for kind in ("ingest", "ingest_bad", "build"))  # ours, not baselines
        checks = [
            (f"ingestion {ratio:.2f}x DuckDB read_json", ratio <= TARGET_RATIO),
            (f"our peak memory {peak:.0f} MiB", peak < TARGET_PEAK_MIB),
            (f"per-request build {build['seconds']:.1f}s", build["seconds"] < TARGET_BUILD_SECONDS),
        ]
        print("targets: " + "; ".join(f"{text} {'ok' if ok else 'MISSED'}" for text, ok in checks))
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        if not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
