"""Ingestion: the OpenRouter client, day plans and landing, loading into raw, request logs, enrichment."""
