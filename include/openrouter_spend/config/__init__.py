"""Configuration: the YAML-node helper every loader uses, the ownership registry, its history, and settings."""
