"""The macros (sql/macros/*.sql), staging views (sql/staging/*.sql) and intermediate views
(sql/intermediate/*.sql), recreated in dependency order: macros first, since views and marts read them."""

from __future__ import annotations

import re
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.warehouse.connection import transaction


def sql_files(layer: str) -> list[Path]:
    """The SQL files of one layer folder (staging, intermediate, marts), in name order."""
    return sorted((settings.sql_dir() / layer).glob("*.sql"))


def dependency_order(files: list[Path], schema: str) -> list[Path]:
    """Files ordered so that each view comes after the views of `schema` it reads (by name otherwise)."""
    by_name = {path.stem: path for path in files}
    reads = {
        name: set(re.findall(rf"\b{schema}\.([a-z0-9_]+)", path.read_text())) & set(by_name) - {name}
        for name, path in by_name.items()
    }
    ordered: list[Path] = []
    done: set[str] = set()
    while len(done) < len(by_name):
        ready = sorted(name for name in by_name if name not in done and reads[name] <= done)
        if not ready:
            cycle = sorted(set(by_name) - done)
            raise ValueError(f"{schema} views depend on each other in a cycle: {', '.join(cycle)}")
        for name in ready:
            ordered.append(by_name[name])
            done.add(name)
    return ordered


def create_views(con, layer: str) -> list[str]:
    """(Re)create every view of sql/<layer>/ in the schema of that name, dependencies first; returns the names."""
    con.execute(f"create schema if not exists {layer}")
    names = []
    for path in dependency_order(sql_files(layer), layer):
        try:
            con.execute(f"create or replace view {layer}.{path.stem} as\n{path.read_text()}")
        except Exception as exc:
            raise RuntimeError(f"creating view {layer}.{path.stem} from {path.name} failed: {exc}") from exc
        names.append(path.stem)
    return names


def apply_macros(con) -> list[str]:
    """(Re)create the macros of sql/macros/ that staging views and marts read, so both run their current text.

    A table macro binds the macros it reads when it is created, so those come first.
    """
    applied = []
    for path in dependency_order(sql_files("macros"), "marts"):
        try:
            con.execute(path.read_text())
        except Exception as exc:
            raise RuntimeError(f"applying {path.name} failed: {exc}") from exc
        applied.append(path.stem)
    return applied


def build_staging(con) -> list[str]:
    """(Re)create the macros, every staging view, then the intermediate views over marts, in one transaction;
    returns the staging view names."""
    try:
        with transaction(con):
            apply_macros(con)
            names = create_views(con, "staging")
            # The marts tables exist from the migrations on, so a warehouse never built has these views too.
            create_views(con, "intermediate")
    except Exception as exc:
        raise RuntimeError(f"building staging views failed: {exc}") from exc
    return names
