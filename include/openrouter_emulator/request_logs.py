"""What the emulated applications log: the demo's request-log files, written in the published format.

The product reads these files like any company's (requests_log.ingest); only the emulator writes them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from datetime import date
from pathlib import Path

from openrouter_emulator.catalog import MODELS
from openrouter_spend.ingest.requests_log import request_log_root


def write_emulated_logs(org, day: date, directory: Path | None = None,
                        logging_by_workspace: dict[str, str] | None = None) -> list[Path]:
    """Write what the emulated apps logged on `day` to <directory>/<workspace>/<day>.jsonl[.gz]; returns the files.

    How each workspace logs ("metadata": openrouter_metadata and usage; "plain": ids and the requested model;
    not listed: nothing) comes from the emulated scenario unless `logging_by_workspace` overrides it.
    """
    directory = Path(directory or request_log_root())
    plan = dict(org.world.request_logging if logging_by_workspace is None else logging_by_workspace)
    records = {record["id"]: record for record in org.generations(day)}
    fingerprints: dict[str, str] = {}
    lines: dict[str, list[str]] = {}
    for entry in org.app_request_log(day):
        mode = plan.get(entry["project"])
        record = records[entry["generation_id"]]
        # A retry re-sends the retried request; a looping job without retry_of re-sends the previous one.
        retried = entry.get("retry_of")
        loops = retried is None and entry["workflow"] in fingerprints and _is_looping(org, entry, day)
        fingerprint = fingerprints.get(retried) if retried else (fingerprints[entry["workflow"]] if loops else None)
        fingerprint = fingerprint or hashlib.sha256(f"request|{entry['generation_id']}".encode()).hexdigest()[:16]
        fingerprints[entry["generation_id"]] = fingerprint
        fingerprints[entry["workflow"]] = fingerprint
        if mode is None:
            continue
        line = {key: value for key, value in entry.items() if value is not None}
        line["request_fingerprint"] = fingerprint
        if mode == "metadata":
            line["openrouter_metadata"] = emulated_metadata(record, entry["requested_model"])
            line["usage"] = emulated_usage(record)
        lines.setdefault(entry["project"], []).append(json.dumps(line, separators=(",", ":")))
    written = []
    for workspace, workspace_lines in sorted(lines.items()):
        compressed = plan[workspace] == "metadata"
        target = directory / workspace / f"{day.isoformat()}.jsonl{'.gz' if compressed else ''}"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name("." + target.name + ".tmp")
        body = ("\n".join(workspace_lines) + "\n").encode()
        temporary.write_bytes(gzip.compress(body, mtime=0) if compressed else body)
        os.replace(temporary, target)
        written.append(target)
    return written


def _is_looping(org, entry: dict, day: date) -> bool:
    key = org.key_by_hash(entry["api_key_hash"])
    return key is not None and org.effects(key, day).flat_output


def emulated_metadata(record: dict, requested_model: str) -> dict:
    """The openrouter_metadata a response carried, rebuilt from its /generation record (openrouter-api.md §2.9)."""
    model_id = {model.canonical_slug: model.id for model in MODELS}
    attempts = [{"provider": a["provider_name"], "model": model_id.get(a["model_permaslug"], a["model_permaslug"]),
                 "status": a["status"]} for a in record["provider_responses"] or []]
    served = attempts[-1] if attempts else {"provider": record["provider_name"], "model": record["model"]}
    tried = list(dict.fromkeys((a["provider"], a["model"]) for a in attempts)) or [(served["provider"], served["model"])]
    metadata = {
        "requested": requested_model,
        "strategy": "fallback" if requested_model != record["model"] else "direct",
        "region": "iad",
        "summary": f"available={len(tried)}, selected={served['provider']}",
        "attempt": len(attempts) or 1,
        "is_byok": record["is_byok"],
        "endpoints": {"total": len(tried), "available": [
            {"provider": provider, "model": model, "selected": (provider, model) == (served["provider"], served["model"])}
            for provider, model in tried]},
        "generation_time": int(record["generation_time"] or 0),
    }
    if len(attempts) > 1:
        metadata["attempts"] = attempts
    return metadata


def emulated_usage(record: dict) -> dict:
    """The response `usage` object (tokens and cost) matching a /generation record."""
    return {
        "prompt_tokens": record["native_tokens_prompt"],
        "completion_tokens": record["native_tokens_completion"],
        "total_tokens": record["native_tokens_prompt"] + record["native_tokens_completion"],
        "prompt_tokens_details": {"cached_tokens": record["native_tokens_cached"]},
        "completion_tokens_details": {"reasoning_tokens": record["native_tokens_reasoning"]},
        "cost": record["total_cost"],
        "is_byok": record["is_byok"],
        "cost_details": {"upstream_inference_cost": record["upstream_inference_cost"]},
    }
