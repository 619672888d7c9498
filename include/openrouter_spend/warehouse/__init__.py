"""The DuckDB warehouse: connection, migrations, staging views, marts build and publish, data dictionary.

The names below are the warehouse's everyday API; the rest lives in its modules.
"""

from openrouter_spend.warehouse.connection import DUCKDB_CONFIG, connect, table_counts, transaction
from openrouter_spend.warehouse.migrations import migrate
from openrouter_spend.warehouse.staging import build_staging

__all__ = ["DUCKDB_CONFIG", "build_staging", "connect", "migrate", "table_counts", "transaction"]
