"""Airflow 3 plugin: a "Spend" view in the Airflow UI showing the newest finance digest, with links to earlier ones.

A FastAPI app mounted by the API server under /spend serves the digest folders of $OPENROUTER_SPEND_HOME/digests
(written by openrouter_spend.reports.digest.write_day); an external view with a url_route puts it in the navigation bar
and renders it inside the UI. Every route requires a signed-in Airflow user allowed to read the
openrouter_spend_daily DAG (plugin apps are not protected by Airflow on their own).

Routes: /spend/ (newest digest), /spend/<day>/ (one day), /spend/<day>/files/<name> (its CSV, Markdown and
chart files), /spend/quality/docs/<path> (the offline Data Docs the digest links to), /spend/api/digests (the
list as JSON, with each day's savings total). The strip above a digest links its Savings section.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

DAG_ID = "openrouter_spend_daily"
URL_PREFIX = "/spend"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MEDIA_TYPES = {".csv": "text/csv; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".png": "image/png",
                ".html": "text/html; charset=utf-8", ".json": "application/json", ".css": "text/css; charset=utf-8",
                ".ico": "image/x-icon", ".gif": "image/gif", ".svg": "image/svg+xml", ".otf": "font/otf"}
# The digest links Data Docs relative to its folder on disk (digests/<day>/ → ../../quality/docs/).
_DOCS_LINK = 'href="../../quality/docs/'


async def _reader(request: Request) -> None:
    """Allow only signed-in users who may read the pipeline's DAG (the digest is its output)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme

    user = await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))
    if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=DAG_ID), user=user):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"reading {DAG_ID} is not allowed")


Reader = Annotated[None, Depends(_reader)]
spend_app = FastAPI(title="OpenRouter spend digests", docs_url=None, redoc_url=None, openapi_url=None)


def _digests_root() -> Path:
    from openrouter_spend.config import settings

    return settings.paths().digests


def _digests() -> list[dict]:
    from openrouter_spend.reports.digest import list_digests

    return list_digests(_digests_root().parent)


def _folder(day: str) -> Path:
    if not _DAY.match(day):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="no such digest")
    folder = _digests_root() / day
    if not (folder / "digest.html").is_file():
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no digest for {day}")
    return folder


def _navigation(current: str, digests: list[dict], prefix: str) -> str:
    """A strip above the digest: earlier digests, the day's files and its savings section, as relative links."""
    from openrouter_spend import rendering

    summary = next((item for item in digests if item["day"] == current), {})
    files = summary.get("files", [])
    return rendering.render("spend_view/navigation.html.j2", current=current, digests=digests, prefix=prefix,
                            files=[name for name in files if name.endswith((".csv", ".md"))],
                            savings=summary.get("savings_text"))


def _page(day: str, prefix: str) -> HTMLResponse:
    digests = _digests()
    html = (_folder(day) / "digest.html").read_text().replace(_DOCS_LINK, f'href="{prefix}quality/docs/')
    return HTMLResponse(html.replace("<body>", "<body>" + _navigation(day, digests, prefix), 1))


@spend_app.get("/", response_class=HTMLResponse)
def latest(_: Reader) -> HTMLResponse:
    """The newest digest, or a note that none was written yet."""
    digests = _digests()
    if not digests:
        from openrouter_spend import rendering

        return HTMLResponse(rendering.render("spend_view/empty.html.j2"))
    return _page(digests[0]["day"], "")


@spend_app.get("/api/digests")
def digests(_: Reader) -> list[dict]:
    """Every digest with its headline numbers, newest first."""
    return [{key: value for key, value in item.items() if key != "folder"} for item in _digests()]


@spend_app.get("/quality/docs/{name:path}")
def data_docs(name: str, _: Reader) -> FileResponse:
    """A file of the offline Data Docs (the index by usage day, GX's pages and their local assets)."""
    from openrouter_spend.config import settings

    root = (settings.paths().quality / "docs").resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file() or path.suffix not in _MEDIA_TYPES:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no Data Docs file {name!r}")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix])


@spend_app.get("/{day}/", response_class=HTMLResponse)
def one_day(day: str, _: Reader) -> HTMLResponse:
    """The digest of one UTC day."""
    return _page(day, "../")


@spend_app.get("/{day}/files/{name:path}")
def day_file(day: str, name: str, _: Reader) -> FileResponse:
    """A file of a day's digest folder (only the files the digest lists)."""
    folder = _folder(day)
    listed = next((item.get("files", []) for item in _digests() if item["day"] == day), [])
    path = (folder / name).resolve()
    if name not in listed or folder.resolve() not in path.parents or not path.is_file():
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no file {name!r} in the {day} digest")
    return FileResponse(path, media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        filename=path.name if path.suffix == ".csv" else None)


class SpendViewPlugin(AirflowPlugin):
    """Registers the digest app with the API server and the "Spend" entry in the UI navigation."""

    name = "openrouter_spend_view"
    fastapi_apps = [{"app": spend_app, "url_prefix": URL_PREFIX, "name": "OpenRouter spend digests"}]
    external_views = [{
        "name": "Spend",
        # Relative (no leading slash) so the UI resolves it against its own base URL, behind proxies too.
        "href": "spend/",
        "url_route": "spend",
        "destination": "nav",
        "nav_top_level": True,
    }]
