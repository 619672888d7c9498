"""The demo organisation's configuration, written with concrete dates for one scenario.

The demo files in demo_config/ date the emulator's planted events relative to its anchor date ("@anchor-6";
`anchor: emulator`). `write_demo_config` lays them, and the scenario's own files, over the product's example
configuration and resolves every relative date against the anchor, so the product reads plain dates only.

`python -m openrouter_emulator.demo SCENARIO DIR [--anchor-date YYYY-MM-DD]` writes one from a shell.
"""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from openrouter_emulator.org import resolve_anchor_date
from openrouter_emulator.scenarios import get_scenario
from openrouter_spend.config import settings

DEMO_CONFIG_DIR = Path(__file__).resolve().parent / "demo_config"
_RELATIVE_DATE = re.compile(r"^@anchor(?:([+-])(\d+))?$")


def _resolve_dates(value: Any, anchor: date) -> Any:
    """`value` with every "@anchor±N" string replaced by its date."""
    if isinstance(value, dict):
        return {key: _resolve_dates(item, anchor) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_dates(item, anchor) for item in value]
    match = _RELATIVE_DATE.match(value.strip()) if isinstance(value, str) else None
    if match:
        sign, days = match.groups()
        return anchor + timedelta(days=int(days or 0) * (-1 if sign == "-" else 1))
    return value


def _document(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def write_demo_config(scenario: str, target: Path, anchor_date: date | str | None = None) -> Path:
    """Write `scenario`'s configuration to `target` with concrete dates; returns `target`.

    Each file is the product's example, with the demo organisation's file and then the scenario's own laid
    over its top-level keys (a scenario's whole-file text replaces it). Relative dates resolve against
    `anchor_date` (default: the emulator's, OPENROUTER_EMULATOR_ANCHOR_DATE else today UTC).
    """
    world = get_scenario(scenario)
    anchor = resolve_anchor_date(anchor_date)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    names = sorted({path.name for folder in (settings.DEFAULT_CONFIG_DIR, DEMO_CONFIG_DIR)
                    for path in folder.glob("*.yaml")} | set(world.config_files))
    for name in names:
        document = _document(settings.DEFAULT_CONFIG_DIR / name)
        document.update(_document(DEMO_CONFIG_DIR / name))
        overlay = world.config_files.get(name)
        if isinstance(overlay, str):
            document = yaml.safe_load(overlay) or {}
        elif overlay is not None:
            document.update(overlay)
        document.pop("anchor", None)
        text = yaml.safe_dump(_resolve_dates(document, anchor), sort_keys=False, allow_unicode=True)
        (target / name).write_text(f"# The emulator's '{world.name}' organisation, anchor {anchor}.\n{text}")
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m openrouter_emulator.demo`."""
    parser = argparse.ArgumentParser(prog="python -m openrouter_emulator.demo", description=__doc__)
    parser.add_argument("scenario")
    parser.add_argument("target", type=Path)
    parser.add_argument("--anchor-date", default=None)
    args = parser.parse_args(argv)
    print(write_demo_config(args.scenario, args.target, args.anchor_date))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
