"""openrouter-spend: where a company's OpenRouter money goes."""

__version__ = "0.1.0"
