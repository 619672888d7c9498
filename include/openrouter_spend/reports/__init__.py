"""Reports: the finance digest, the FOCUS export, and the command line's summary."""
