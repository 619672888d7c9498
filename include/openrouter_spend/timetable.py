"""The daily DAG's schedule: one UTC usage day per run, named by that day in scheduled and manual runs alike.

A scheduled run of a daily `CronDataIntervalTimetable` has logical date D for usage day D, but a manual run
at D 00:00 covers the day before. The scheduler finds a day's run by logical date only, so runs made by
`openrouter-spend run` (manual runs in the same metadata database) must carry the scheduler's identity:
here a manual run whose logical date falls on midnight covers the day that starts there. A manual run
at any other time still covers the last complete day. Airflow loads the class through the plugin
registered in pyproject.toml (`airflow.plugins` entry point), which it needs to deserialise the DAG.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class UsageDayTimetable(CronDataIntervalTimetable):
    """Daily at 00:00 UTC for the day that just ended; a manual run at midnight covers the day starting there."""

    def __init__(self, cron: str = "0 0 * * *", timezone: str = "UTC") -> None:
        super().__init__(cron, timezone)

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        if self._align_to_prev(run_after) == run_after:
            return DataInterval(start=run_after, end=self._get_next(run_after))
        return super().infer_manual_data_interval(run_after=run_after)


class UsageDayTimetablePlugin(AirflowPlugin):
    """Registers UsageDayTimetable so the scheduler and API server can deserialise the daily DAG."""

    name = "openrouter_spend_timetable"
    timetables = [UsageDayTimetable]
