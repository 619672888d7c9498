"""Fixtures: emulator servers on free ports, with a fixed anchor date so tests never depend on today.

They run on the replay clock (00:05 of the anchor date, snapshots as of the start of the day), so every
assertion is about a fixed moment; test_emulator_clock.py covers the wall clock, the default.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import requests

from openrouter_emulator import EmulatorServer

ANCHOR = date(2026, 11, 20)
# Generous: a loaded machine can take well over 10 s to answer; tests that need a short timeout pass their own.
REQUEST_TIMEOUT_SECONDS = 60


class Api:
    """A requests session bound to one emulator and one key."""

    def __init__(self, server: EmulatorServer, key: str | None):
        self.server = server
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(self.server.base_url + path, params=params, timeout=REQUEST_TIMEOUT_SECONDS)

    def post(self, path: str, body) -> requests.Response:
        return self.session.post(self.server.base_url + path, json=body, timeout=REQUEST_TIMEOUT_SECONDS)

    def data(self, path: str, **params):
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(anchor_date=ANCHOR, clock="replay") as running:
        yield running


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmulatorServer]:
    """A default-scenario server for read-only tests (never change its clock or faults)."""
    with EmulatorServer(anchor_date=ANCHOR, clock="replay") as running:
        yield running


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(scenario="quiet", anchor_date=ANCHOR, clock="replay") as running:
        yield running


@pytest.fixture
def api(server: EmulatorServer) -> Api:
    return Api(server, server.management_key)


@pytest.fixture(scope="module")
def shared_api(shared_server: EmulatorServer) -> Api:
    return Api(shared_server, shared_server.management_key)


@pytest.fixture(scope="module")
def inference_api(shared_server: EmulatorServer) -> Api:
    return Api(shared_server, shared_server.inference_key)


@pytest.fixture(scope="module")
def anonymous_api(shared_server: EmulatorServer) -> Api:
    return Api(shared_server, None)
