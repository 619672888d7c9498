"""The configuration files' JSON Schemas, generated from their models into schemas/ (`make schemas`).

Editors that read a `# yaml-language-server: $schema=...` line (VS Code's YAML extension, JetBrains IDEs,
Neovim with yaml-language-server) complete and check each file as it is typed; the loaders check the same
rules, plus the ones that span files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openrouter_spend.config.settings import PROJECT_ROOT

SCHEMA_DIR = PROJECT_ROOT / "schemas"
_BASE_ID = "https://github.com/openrouter-spend/openrouter-spend/schemas/"


def file_models() -> dict[str, type]:
    """Each configuration file's name and its model."""
    from openrouter_spend.alerts.rules import RULES_FILE, RulesFile
    from openrouter_spend.config.owners import AnnotationsFile, OwnersFile, PremiumFile
    from openrouter_spend.config.yamlnode import ANNOTATIONS_FILE, OWNERS_FILE, PREMIUM_FILE
    from openrouter_spend.quality.config import QUALITY_FILE, QualityFile

    return {OWNERS_FILE: OwnersFile, PREMIUM_FILE: PremiumFile, ANNOTATIONS_FILE: AnnotationsFile,
            RULES_FILE: RulesFile, QUALITY_FILE: QualityFile}


def schema_name(file_name: str) -> str:
    """owners.yaml → owners.schema.json."""
    return f"{Path(file_name).stem}.schema.json"


def schema_texts() -> dict[str, str]:
    """Each schema file's name and its text, as the models generate it."""
    texts = {}
    for file_name, model in file_models().items():
        name = schema_name(file_name)
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": _BASE_ID + name,
                  **model.model_json_schema()}
        texts[name] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return texts


def main() -> int:
    """Write every schema into schemas/."""
    for name, text in schema_texts().items():
        (SCHEMA_DIR / name).write_text(text)
        print(SCHEMA_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
