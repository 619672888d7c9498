"""`python -m openrouter_emulator [--scenario NAME] [--port N] [--seed N] [--anchor-date YYYY-MM-DD]
[--clock wall|replay]`."""

from __future__ import annotations

import argparse
from datetime import date

from openrouter_emulator.org import SCENARIOS
from openrouter_emulator.server import CLOCK_MODES, serve_forever


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m openrouter_emulator", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="default")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--anchor-date", type=date.fromisoformat, default=None)
    parser.add_argument("--clock", choices=CLOCK_MODES, default=None,
                        help="wall: the real API's time (default); replay: a settable clock for replaying past days")
    args = parser.parse_args(argv)
    serve_forever(scenario=args.scenario, port=args.port, seed=args.seed, anchor_date=args.anchor_date,
                  clock=args.clock)


if __name__ == "__main__":
    main()
