"""The checks that span configuration files: names one file uses must be defined in owners.yaml.

The loader of owners.yaml passes what it defines as the validation context of the other files
(`known_names`); a model field that names a project or a budget owner validates through the checks below.
Without a context (a file validated on its own, e.g. rules.yaml without owners.yaml) the names are not
checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationInfo

OWNERS_FILE = "owners.yaml"
ACCOUNT_PROJECT = "*"


def known_names(*, projects: Iterable[str] | None = None, budget_owners: Iterable[str] | None = None,
                ) -> dict[str, Any]:
    """The validation context naming what owners.yaml defines."""
    return {"projects": None if projects is None else frozenset(projects),
            "budget_owners": None if budget_owners is None else frozenset(budget_owners)}


def check_project(project: str, info: ValidationInfo) -> str:
    """An annotation's project is one of owners.yaml's, or '*' for the whole account."""
    projects = (info.context or {}).get("projects")
    if projects is not None and project != ACCOUNT_PROJECT and project not in projects:
        raise ValueError(f"unknown project {project!r} (not in {OWNERS_FILE}; use '{ACCOUNT_PROJECT}' for the "
                         "whole account)")
    return project


def check_budget_owner(owner: str, info: ValidationInfo) -> str:
    """A route's budget owner is one of owners.yaml's."""
    owners = (info.context or {}).get("budget_owners")
    if owners is not None and owner not in owners:
        raise ValueError(f"{owner!r} is no budget owner in {OWNERS_FILE} (known: {', '.join(sorted(owners))})")
    return owner
