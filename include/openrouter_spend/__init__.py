"""openrouter-spend: where a company's OpenRouter money goes."""

import sys

from openrouter_spend.warehouse import marts as _marts

__version__ = "0.1.0"

# Compatibility until the quality gate imports the package layout: `openrouter_spend.marts` is
# openrouter_spend.warehouse.marts.
sys.modules[f"{__name__}.marts"] = _marts
