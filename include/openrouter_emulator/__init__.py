"""A faithful, deterministic OpenRouter API emulator serving a synthetic organisation over real HTTP.

    with EmulatorServer(scenario="default", anchor_date=date(2026, 11, 20)) as server:
        server.base_url          # http://127.0.0.1:<port>/api/v1
        server.set_now(...)      # the clock every response is "as of"
        # clock="wall" (default): the real API's time, /credits and /keys describe now (today's spend so far
        # included); clock="replay": snapshots as of the start of the clock's day, for replaying past days
        server.set_faults([FaultRule("rate_limit", path_prefix="/activity", times=2)])
        server.org.events        # planted events the pipeline should find

`python -m openrouter_emulator --scenario quiet --port 8090` serves one in the foreground.
Control endpoints under /_emulator (faults, clock, requests, reset, generations, info) let another process
drive a running emulator.
"""

from openrouter_emulator.faults import FaultRule
from openrouter_emulator.org import SyntheticOrg, build_org
from openrouter_emulator.server import EmulatorServer, serve_forever

__all__ = ["EmulatorServer", "FaultRule", "SyntheticOrg", "build_org", "serve_forever"]
