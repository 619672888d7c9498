"""Moved to openrouter_spend.warehouse.marts; these names stay here until the quality package imports them there."""

from openrouter_spend.warehouse.marts import MARTS, _rebuild_mart, build_marts, rebuild_all, table_docs
from openrouter_spend.warehouse.publish import publish_warehouse

__all__ = ["MARTS", "_rebuild_mart", "build_marts", "publish_warehouse", "rebuild_all", "table_docs"]
