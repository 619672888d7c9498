"""Immutable landing area: every API response body is written here, compressed, before it is parsed.

Layout: `<landing>/openrouter/date=YYYY-MM-DD/run=<run>/<batch>/<endpoint>/<seq>.json.gz`, plus the batch's
`_manifest.json`, written last. A batch without a manifest was interrupted and is ignored by the loader;
a committed batch is never modified. Retried tasks write new batches, and the loader keeps the newest
response per (endpoint, params) across the run's committed batches.

The root is a local `Path` or an Airflow `ObjectStoragePath` (see `settings.landing_root`); only operations
both support are used here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.ingest.responses import RawResponse

MANIFEST = "_manifest.json"


def _is_local(path) -> bool:
    return isinstance(path, Path)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(text: str) -> str:
    """A path component made only of safe characters (run ids carry ':' and '+')."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def run_dir(landing_root, partition_date: date, run_id: str):
    """The folder holding every batch of one run for one day."""
    return landing_root / f"date={partition_date.isoformat()}" / f"run={safe_component(run_id)}"


@dataclass(frozen=True)
class LandedObject:
    """One landed response, as recorded in the batch manifest."""

    file: str
    endpoint: str
    params: dict[str, str]
    status: int
    fetched_at: str
    sha256: str
    bytes: int
    content_type: str


@dataclass
class LandingBatch:
    """A set of responses landed by one task attempt; `commit()` makes it visible to the loader."""

    landing_root: Path
    partition_date: date
    run_id: str
    name: str
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = (
            run_dir(self.landing_root, self.partition_date, self.run_id)
            / f"{safe_component(self.name)}-{uuid.uuid4().hex[:8]}"
        )
        self.directory.mkdir(parents=True, exist_ok=False)
        self._objects: list[LandedObject] = []
        self._lock = threading.Lock()
        self._sequence = 0
        self.committed = False

    def land(self, raw: RawResponse) -> LandedObject:
        """Write one response body (gzip, exclusive create) and record it."""
        if self.committed:
            raise RuntimeError(f"landing batch {self.directory} is already committed")
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        endpoint_dir = safe_component(raw.endpoint.strip("/").replace("/", "_")) or "root"
        relative = Path(endpoint_dir) / f"{sequence:05d}.json.gz"
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0 keeps the gzip bytes a pure function of the body; "x" refuses to overwrite locally, and
        # object stores get a fresh batch directory (uuid) instead.
        with target.open("xb" if _is_local(target) else "wb") as handle, \
                gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:
            gz.write(raw.body)
        landed = LandedObject(
            file=relative.as_posix(), endpoint=raw.endpoint, params=dict(raw.params), status=raw.status,
            fetched_at=raw.fetched_at.isoformat(), sha256=hashlib.sha256(raw.body).hexdigest(),
            bytes=len(raw.body), content_type=raw.content_type,
        )
        with self._lock:
            self._objects.append(landed)
        return landed

    @property
    def objects(self) -> list[LandedObject]:
        with self._lock:
            return sorted(self._objects, key=lambda obj: obj.file)

    def commit(self) -> Path:
        """Write the manifest atomically; from now on the batch is immutable and loadable."""
        manifest = {
            "partition_date": self.partition_date.isoformat(),
            "run_id": self.run_id,
            "batch": self.directory.name,
            "committed_at": datetime.now(UTC).isoformat(),
            "notes": self.notes,
            "objects": [asdict(obj) for obj in self.objects],
        }
        path = self.directory / MANIFEST
        text = json.dumps(manifest, indent=1, sort_keys=True)
        if _is_local(path):
            temporary = path.with_suffix(".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
        else:  # an object PUT is atomic: readers see the whole manifest or none
            path.write_text(text)
        self.committed = True
        return path


@dataclass(frozen=True)
class LandedResponse:
    """A committed landed object, resolved to its absolute file, ready to read."""

    path: Any  # Path or ObjectStoragePath
    batch: str
    endpoint: str
    params: dict[str, str]
    fetched_at: datetime
    sha256: str

    def read_body(self) -> bytes:
        """The exact response body; a checksum mismatch means the file was damaged after landing."""
        body = gzip.decompress(self.path.read_bytes())
        if hashlib.sha256(body).hexdigest() != self.sha256:
            raise ValueError(f"{self.path}: checksum does not match its manifest; the file was altered")
        return body


def committed_manifests(landing_root: Path, partition_date: date, run_id: str) -> list[dict]:
    """Every committed batch manifest of a run for a day, oldest commit first."""
    folder = run_dir(landing_root, partition_date, run_id)
    manifests = []
    for path in sorted(folder.glob(f"*/{MANIFEST}")):
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: landing manifest is not valid JSON ({exc})") from None
        manifest["_directory"] = path.parent
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: m["committed_at"])


def latest_responses(manifests: Iterable[dict]) -> list[LandedResponse]:
    """The newest landed response per (endpoint, params) across committed batches."""
    newest: dict[tuple[str, str], LandedResponse] = {}
    for manifest in manifests:
        for obj in manifest["objects"]:
            response = LandedResponse(
                path=manifest["_directory"] / obj["file"], batch=manifest["batch"],
                endpoint=obj["endpoint"], params=obj["params"],
                fetched_at=datetime.fromisoformat(obj["fetched_at"]), sha256=obj["sha256"],
            )
            key = (response.endpoint, json.dumps(response.params, sort_keys=True))
            if key not in newest or newest[key].fetched_at <= response.fetched_at:
                newest[key] = response
    return sorted(newest.values(), key=lambda r: (r.endpoint, json.dumps(r.params, sort_keys=True)))


def batch_notes(manifests: Iterable[dict]) -> dict[str, Any]:
    """Merged notes of the run's batches (later batches win per note name)."""
    merged: dict[str, Any] = {}
    for manifest in manifests:
        merged.update(manifest.get("notes") or {})
    return merged
