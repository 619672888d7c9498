"""Configuration: the YAML-node helper every loader uses, the ownership registry, its history, and settings."""

# Compatibility until the quality gate imports the package layout: the names it imports from here.
from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.config.yamlnode import Node as _Node
from openrouter_spend.config.yamlnode import read_yaml as _read_yaml

__all__ = ["ConfigError", "_Node", "_read_yaml"]
