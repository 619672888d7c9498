"""openrouter-spend: where a company's OpenRouter money goes."""

import sys

from openrouter_spend.config import settings
from openrouter_spend.warehouse import marts as _marts

__version__ = "0.1.0"

# Compatibility until the quality gate imports the package layout: `from openrouter_spend import settings`
# is openrouter_spend.config.settings and `openrouter_spend.marts` is openrouter_spend.warehouse.marts.
sys.modules[f"{__name__}.marts"] = _marts
__all__ = ["settings"]
