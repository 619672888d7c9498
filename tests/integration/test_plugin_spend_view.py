"""The "Spend" plugin inside a real `airflow api-server`: it loads, registers its view, guards its pages with
Airflow's login and serves the digests the pipeline wrote."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from digest_fixtures import ROOT, query, realistic_run

from openrouter_spend.reports import digest
from openrouter_spend.reports.digest.formatting import money
from openrouter_spend.runner import airflow_environment, prepare_airflow_home

pytestmark = pytest.mark.slow

USER, PASSWORD = "finance", "digest-test-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def server(emulated_warehouse, tmp_path_factory):
    """An API server on a free port, with two digests in its OPENROUTER_SPEND_HOME and one user."""
    run = realistic_run(emulated_warehouse)
    home = run.fresh_home(tmp_path_factory.mktemp("plugin") / "home")
    shutil.copytree(emulated_warehouse.home / "quality" / "docs", home / "quality" / "docs")
    days = [run.newest_day - timedelta(days=1), run.newest_day]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENROUTER_SPEND_HOME", str(home))
        patch.delenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", raising=False)
        written = [digest.write_day(day) for day in days]
    airflow_home = tmp_path_factory.mktemp("airflow-home")
    prepare_airflow_home(airflow_home)
    passwords = airflow_home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_HOME"))}
    env.update(airflow_environment(airflow_home))
    env.update({"OPENROUTER_SPEND_HOME": str(home), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False"})
    log = open(airflow_home / "api-server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                                str(port), "--workers", "1"], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"api-server exited with {process.returncode}:\n"
                            + (airflow_home / "api-server.log").read_text()[-3000:])
            try:
                if _get(f"{base}/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("api-server did not answer within 180 s:\n" + (airflow_home / "api-server.log").read_text()[-3000:])
        request = urllib.request.Request(f"{base}/auth/token", data=json.dumps(
            {"username": USER, "password": PASSWORD}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.load(response)["access_token"]
        yield base, token, home, days, written
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_plugin_is_loaded_with_its_app_and_nav_view(server):
    base, token, *_ = server
    status, body, _ = _get(f"{base}/api/v2/plugins", token)
    assert status == 200
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "openrouter_spend_view")
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/spend"]
    view = plugin["external_views"][0]
    assert (view["name"], view["url_route"], view["href"], view["destination"]) == ("Spend", "spend", "spend/", "nav")
    status, body, _ = _get(f"{base}/api/v2/plugins/importErrors", token)
    assert status == 200 and "spend_view" not in body.decode()


def test_pages_need_an_airflow_login(server):
    base, _token, _home, days, _ = server
    for path in ("/spend/", f"/spend/{days[0].isoformat()}/", "/spend/api/digests",
                 f"/spend/{days[0].isoformat()}/files/spend_by_owner.csv", "/spend/quality/docs/index.html"):
        status, body, _ = _get(f"{base}{path}")
        assert status == 401, (path, status, body[:200])


def test_spend_view_serves_the_newest_digest_and_links_earlier_ones(server):
    base, token, home, days, written = server
    status, body, headers = _get(f"{base}/spend/", token)
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    newest_html = (home / "digests" / days[1].isoformat() / "digest.html").read_text()
    # The Data Docs link is relative to the digest folder on disk; the view points it at its own route.
    assert f'href="../../quality/docs/index.html#day-{days[1].isoformat()}"' in newest_html
    served = newest_html.replace('href="../../quality/docs/', 'href="quality/docs/')
    assert served.split('<div class="page">', 1)[1] in page
    assert money(written[1]["spend_usd"]) in page
    assert f'href="{days[0].isoformat()}/"' in page
    assert f'href="{days[1].isoformat()}/files/spend_by_owner.csv"' in page

    status, body, _ = _get(f"{base}/spend/{days[0].isoformat()}/", token)
    assert status == 200 and money(written[0]["spend_usd"]) in body.decode()
    assert f'href="../{days[1].isoformat()}/"' in body.decode()
    assert f'href="../quality/docs/index.html#day-{days[0].isoformat()}"' in body.decode()

    status, body, _ = _get(f"{base}/spend/api/digests", token)
    assert [item["day"] for item in json.loads(body)] == [days[1].isoformat(), days[0].isoformat()]


def test_spend_view_shows_the_savings_section_and_links_it_with_its_total(server):
    base, token, home, days, _ = server
    count, total = query(home / "published" / "warehouse.duckdb",
                         "select count(*), coalesce(sum(monthly_saving_usd), 0) from marts.rpt_savings_opportunities "
                         "where usage_date = ? and bound_kind <> 'not_counted' "
                         "and coalesce(price_direction, '') <> 'drop'", [days[1]])[0]
    status, body, _ = _get(f"{base}/spend/", token)
    page = body.decode()
    assert status == 200 and '<section id="savings"><h2><span class="num">4</span>Savings</h2>' in page
    status, body, _ = _get(f"{base}/spend/api/digests", token)
    newest = json.loads(body)[0]
    assert (newest["savings_opportunities"], round(newest["savings_monthly_usd"], 2)) == (count, round(total, 2))
    if count:
        assert f'<a href="#savings">Savings: {newest["savings_text"]}</a>' in page
        assert money(total) in newest["savings_text"]
        assert page.split('<section id="savings">')[1].split("</section>")[0].count("<tr>\n") == min(count, 5)
    else:
        assert "No savings opportunity worth a cent a month on this day" in page and 'href="#savings"' not in page


def test_the_data_docs_the_digest_links_to_are_served_offline_and_nothing_beside_them(server):
    base, token, home, days, _ = server
    status, body, headers = _get(f"{base}/spend/quality/docs/index.html", token)
    assert status == 200 and headers["content-type"].startswith("text/html")
    index = body.decode()
    assert f'id="day-{days[1].isoformat()}"' in index
    page = re.search(r'href="(validations/[^"]+\.html)"', index).group(1)
    status, body, _ = _get(f"{base}/spend/quality/docs/{page}", token)
    assert status == 200 and b"offline.css" in body
    assert _get(f"{base}/spend/quality/docs/static/styles/offline.css", token)[0] == 200
    for bad in ("/spend/quality/docs/..%2F..%2Fpublished%2Fwarehouse.duckdb", "/spend/quality/docs/nothing.html",
                "/spend/quality/docs/../results"):
        assert _get(f"{base}{bad}", token)[0] == 404, bad


def test_digest_files_download_and_nothing_else_does(server):
    base, token, home, days, _ = server
    day = days[1].isoformat()
    status, body, headers = _get(f"{base}/spend/{day}/files/spend_by_owner.csv", token)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert body == (home / "digests" / day / "spend_by_owner.csv").read_bytes()
    status, body, _ = _get(f"{base}/spend/{day}/files/charts/burn_and_runway.png", token)
    assert status == 200 and body.startswith(b"\x89PNG")
    for bad in (f"/spend/{day}/files/..%2F..%2Fpublished%2Fwarehouse.duckdb", f"/spend/{day}/files/probe.html",
                "/spend/not-a-day/", "/spend/2001-01-01/"):
        assert _get(f"{base}{bad}", token)[0] == 404, bad
    assert Path(home / "published" / "warehouse.duckdb").exists()
