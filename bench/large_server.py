"""Serve an emulated organisation over HTTP for the benchmark, answering /generation for request-log ids written
by `openrouter_emulator.large.write_request_log` (rebuilt from the id) as well as its own.

    .venv/bin/python bench/large_server.py --scenario large --anchor-date 2026-11-25

Prints one JSON line {"base_url", "management_key", "control_url"} once listening, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, datetime, timedelta

from openrouter_emulator import EmulatorServer
from openrouter_emulator.large import generation_for_id
from openrouter_emulator.server import NOT_FOUND, ApiError


class RequestLogServer(EmulatorServer):
    """The emulator, plus /generation answers for ids of DuckDB-written request-log days."""

    def _generation(self, query: dict[str, str], **kwargs):
        try:
            return super()._generation(query, **kwargs)
        except ApiError as exc:
            if exc.status != 404:
                raise
        record = generation_for_id(self.org, query.get("id") or "")
        if record is None:
            raise ApiError(404, NOT_FOUND)
        available_at = datetime.fromisoformat(record["created_at"]) + timedelta(seconds=self.generation_lag_seconds)
        if available_at > self.now:
            raise ApiError(404, NOT_FOUND)
        return {"data": record}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="large")
    parser.add_argument("--anchor-date", type=date.fromisoformat, required=True)
    args = parser.parse_args()
    server = RequestLogServer(scenario=args.scenario, anchor_date=args.anchor_date).start()
    print(json.dumps({"base_url": server.base_url, "management_key": server.management_key,
                      "control_url": server.control_url}), flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
