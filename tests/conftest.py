"""Shared fixtures: an isolated OPENROUTER_SPEND_HOME per test, a running emulator, and emulated warehouses built
once (through `openrouter-spend run`) and cached on disk for every suite that reads one."""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO

import pytest

# Airflow reads its configuration at import time; keep every test run away from a real ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="openrouter-spend-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
# Pinned, so the emulated data (weekdays, noise, planted events) is the same on every run and a cached
# warehouse stays valid across days.
EMULATED_ANCHOR = date(2026, 11, 26)
EMULATED_DAYS = tuple(EMULATED_ANCHOR - timedelta(days=offset) for offset in range(14, 0, -1))  # 11-12 .. 11-25
# What a build reads: the code, SQL, DAG and bundled configuration, and the lock of the libraries (the recipe,
# the CLI's command line and environment, is hashed from its source in WorldSpec.key).
BUILD_INPUTS = ("include", "sql", "dags", "requirements.txt")
WAREHOUSE_CACHE = Path(os.environ.get("OPENROUTER_SPEND_TEST_CACHE") or ROOT / ".pytest_cache" / "emulated-warehouses")


@pytest.fixture
def spend_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh OPENROUTER_SPEND_HOME for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(home))
    return home


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """A running default-scenario emulator; OPENROUTER_* point at it (and at its organisation's configuration)."""
    from openrouter_emulator import EmulatorServer
    from openrouter_emulator.demo import write_demo_config

    with EmulatorServer(scenario="default") as server:
        config_dir = write_demo_config("default", tmp_path_factory.mktemp("demo-config"), server.anchor_date)
        monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(config_dir))
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", server.management_key)
        monkeypatch.delenv("AIRFLOW_CONN_OPENROUTER_DEFAULT", raising=False)
        yield server


# ----- the order tests are handed out in ---------------------------------------------------------------------

# Files that take minutes of real processes (a Celery deployment, CLI runs through Airflow), longest first, so
# pytest-xdist hands them out at the start instead of leaving one to run alone at the end (with
# `--no-loadscope-reorder` the collection order below, not the number of tests per file, decides).
LONGEST_FIRST = (
    "integration/test_celery_deployment.py",
    "integration/test_realapi_backfill.py",
    "integration/test_cli_faults_end_to_end.py",
    "hardening/",
    "integration/test_cli_runs_in_airflow.py",
)
# Files whose tests read one session-scoped CLI run (hostile_run, tests/hardening/conftest.py): one test process
# takes them all, so the run is made once, not once per process.
SHARED_RUN_FILES = ("hardening/test_hostile_world.py", "hardening/test_crash_recovery.py",
                    "hardening/test_permanent_errors.py")
READS_A_WORLD = ("emulated_warehouse", "emulated_worlds")


def _handout_rank(path: str, reads_a_world: bool) -> int:
    """LONGEST_FIRST in its order, then everything else, then the files whose tests wait for an emulated world
    (built in the background from the start)."""
    for rank, prefix in enumerate(LONGEST_FIRST):
        if path.startswith(prefix):
            return rank
    return len(LONGEST_FIRST) + reads_a_world


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the files by _handout_rank (pytest-xdist hands them out in the order collected)."""
    tests_dir = Path(__file__).parent
    path_of = {item: item.path.relative_to(tests_dir).as_posix() for item in items}
    waits = {path_of[item] for item in items if any(name in item.fixturenames for name in READS_A_WORLD)}
    first_seen = {path: index for index, path in reversed(list(enumerate(path_of[item] for item in items)))}
    items.sort(key=lambda item: (_handout_rank(path_of[item], path_of[item] in waits), first_seen[path_of[item]]))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, with the SHARED_RUN_FILES as one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedRunScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "shared-run" if path.removeprefix("tests/") in SHARED_RUN_FILES else path

    return SharedRunScheduling(config, log)


# ----- emulated warehouses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatedWarehouse:
    """A home filled by `openrouter-spend run --start DAYS[0] --end DAYS[-1] --scenario SCENARIO` on the replay clock.

    The home is shared by every test (and every test run while its inputs are unchanged): read it, or copy what
    you change into tmp_path first.
    """

    home: Path
    scenario: str
    days: tuple[date, ...]
    anchor: date

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def published(self) -> Path:
        return self.home / "published" / "warehouse.duckdb"

    @property
    def run_output(self) -> str:
        """What the build's `openrouter-spend run` printed (stdout and stderr)."""
        return (self.home.parent / "run.log").read_text()

    def cli_env(self, home: Path) -> dict[str, str]:
        """The environment the world was built with, for another `openrouter-spend run` on a copy of it in home."""
        return _cli_env(home, WorldSpec(self.scenario, self.days, self.anchor))


@dataclass(frozen=True)
class WorldSpec:
    """Which emulated world to build: a scenario over consecutive days before a pinned anchor."""

    scenario: str = "default"
    days: tuple[date, ...] = EMULATED_DAYS
    anchor: date = EMULATED_ANCHOR

    def key(self) -> str:
        digest = hashlib.sha256(f"{self.scenario}|{self.anchor}|{self.days[0]}|{self.days[-1]}|replay".encode())
        digest.update(_inputs_digest().encode())
        digest.update(inspect.getsource(_cli_env).encode() + inspect.getsource(_start_build).encode())
        return f"{self.scenario}-{self.days[0]}-{self.days[-1]}-{digest.hexdigest()[:16]}"


_INPUTS_DIGEST: list[str] = []


def _inputs_digest() -> str:
    """sha256 over the path and bytes of every file a build reads (computed once per process)."""
    if not _INPUTS_DIGEST:
        digest = hashlib.sha256()
        for name in BUILD_INPUTS:
            top = ROOT / name
            files = [top] if top.is_file() else sorted(
                path for path in top.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
                # the editable install's metadata (a copy of the README among it), written by `make install`
                and not any(part.endswith(".egg-info") for part in path.parts))
            for path in files:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
        _INPUTS_DIGEST.append(digest.hexdigest())
    return _INPUTS_DIGEST[0]


@contextmanager
def _exclusive(lock_files: list[Path]) -> Iterator[None]:
    """Hold exclusive file locks (taken in name order), so parallel test processes build each world only once."""
    with ExitStack() as stack:
        for lock_file in sorted(lock_files):
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(lock_file, "w"))
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _cli_env(home: Path, spec: WorldSpec) -> dict[str, str]:
    """The CLI's environment: nothing inherited that points at another home, Airflow, API or channel."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OPENROUTER_", "AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    # Replay clock: the days stand for scheduled runs, each snapshot taken right after its day, so every day
    # has an end-of-day balance and the planted top-ups are dated.
    env.update({"OPENROUTER_SPEND_HOME": str(home), "OPENROUTER_EMULATOR_ANCHOR_DATE": spec.anchor.isoformat(),
                "OPENROUTER_EMULATOR_CLOCK": "replay", "OPENROUTER_SPEND_TASK_RETRIES": "0",
                "GX_ANALYTICS_ENABLED": "False"})
    return env


def _start_build(spec: WorldSpec, slot: Path) -> tuple[subprocess.Popen, IO[str]]:
    """Start `openrouter-spend run` filling slot/home with the world, its output going to slot/run.log."""
    shutil.rmtree(slot, ignore_errors=True)  # an interrupted build
    (slot / "home").mkdir(parents=True)
    log = open(slot / "run.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "openrouter_spend.cli", "run", "--start", spec.days[0].isoformat(),
         "--end", spec.days[-1].isoformat(), "--scenario", spec.scenario],
        env=_cli_env(slot / "home", spec), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return process, log


# Builds under way in this process, so the session's end can stop those nobody waited for.
_BUILDING: set[subprocess.Popen] = set()


def emulated_warehouses(*specs: WorldSpec) -> list[EmulatedWarehouse]:
    """Each world, from the cache when its inputs are unchanged, otherwise built (missing ones side by side)."""
    slots = {spec: WAREHOUSE_CACHE / spec.key() for spec in specs}
    with _exclusive([slot.with_name(slot.name + ".lock") for slot in slots.values()]):
        missing = {spec: slot for spec, slot in slots.items() if not (slot / "complete").exists()}
        runs = {spec: _start_build(spec, slot) for spec, slot in missing.items()}
        _BUILDING.update(process for process, _ in runs.values())
        try:
            for spec, (process, log) in runs.items():
                code = process.wait(timeout=1800)
                log.close()
                if code != 0:
                    pytest.fail(f"openrouter-spend run ({spec.scenario}) exited {code}:\n"
                                + (missing[spec] / "run.log").read_text()[-3000:])
                (missing[spec] / "complete").touch()
                _drop_stale_builds(missing[spec])
        finally:
            for process, _ in runs.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
                _BUILDING.discard(process)
    return [EmulatedWarehouse(slots[spec] / "home", spec.scenario, spec.days, spec.anchor) for spec in specs]


def _drop_stale_builds(slot: Path) -> None:
    """Remove the same world's builds from earlier inputs, so the cache holds one build per world."""
    prefix = slot.name.rsplit("-", 1)[0] + "-"
    for other in slot.parent.glob(prefix + "*"):
        if other.is_dir() and other != slot and len(other.name) == len(slot.name):
            shutil.rmtree(other, ignore_errors=True)


def _collected_worlds(items: list[pytest.Item]) -> set[WorldSpec]:
    """The worlds the selected tests read: the default one, and each module's EMULATED_WORLDS (scenario → days
    before the module's ANCHOR), which a module that uses `emulated_worlds` declares."""
    specs = set()
    for item in items:
        if "emulated_warehouse" in item.fixturenames:
            specs.add(WorldSpec())
        module = getattr(item, "module", None)
        if "emulated_worlds" in item.fixturenames and hasattr(module, "EMULATED_WORLDS"):
            specs |= {WorldSpec(scenario, tuple(days), module.ANCHOR) for scenario, days in module.EMULATED_WORLDS.items()}
    return specs


_BACKGROUND: list[threading.Thread] = []


def _build_in_background(spec: WorldSpec) -> None:
    try:
        emulated_warehouses(spec)
    except BaseException:  # noqa: BLE001 - the fixture that needs the world builds it again and reports the failure
        pass


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the worlds the selected tests read as soon as they are known, each on its own.

    The builds (subprocesses) then run while the tests that need no world do, instead of starting when the
    first test that reads one is reached; each world's lock is released when it is built, so its readers can
    start before the other worlds are done. Under pytest-xdist every worker does this and the first one to
    take a world's lock builds it.
    """
    if session.config.option.collectonly:
        return
    for spec in sorted(_collected_worlds(session.items), key=lambda spec: -len(spec.days)):  # longest first
        thread = threading.Thread(target=_build_in_background, args=(spec,), name=f"build-{spec.scenario}",
                                  daemon=True)
        thread.start()
        _BACKGROUND.append(thread)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Let a build finish that another test process may be waiting for; stop the builds when interrupted."""
    if exitstatus != pytest.ExitCode.INTERRUPTED:
        for thread in _BACKGROUND:
            thread.join()
    for process in list(_BUILDING):
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def emulated_warehouse() -> EmulatedWarehouse:
    """The default world over the 14 days before the pinned anchor, built once and shared read-only."""
    return emulated_warehouses(WorldSpec())[0]


@pytest.fixture(scope="session")
def emulated_worlds():
    """Build or reuse worlds of other scenarios or days: `emulated_worlds({"quiet": days}, anchor)` → by scenario."""

    def build(worlds: dict[str, Sequence[date]], anchor: date = EMULATED_ANCHOR) -> dict[str, EmulatedWarehouse]:
        built = emulated_warehouses(*(WorldSpec(scenario, tuple(days), anchor) for scenario, days in worlds.items()))
        return {world.scenario: world for world in built}

    return build
