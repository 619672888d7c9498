"""The run context: one usage day per run, configuration parsed once while its files are unchanged."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from openrouter_spend import context
from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import ConfigError


@pytest.fixture
def parses(monkeypatch):
    """How often each configuration file is read and validated."""
    from openrouter_spend.alerts import rules
    from openrouter_spend.config import owners
    from openrouter_spend.quality import config as quality

    counts: Counter[str] = Counter()
    for module in (owners, rules, quality):
        def counted(model, path, *args, _load=module.load_file, **kwargs):
            counts[path.name] += 1
            return _load(model, path, *args, **kwargs)

        monkeypatch.setattr(module, "load_file", counted)
    return counts


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    shutil.copytree(settings.DEFAULT_CONFIG_DIR, folder)
    return folder


def test_every_configuration_file_is_parsed_once_however_often_a_run_reads_it(config_dir, parses):
    run = context.RunContext(date(2026, 3, 1), "run-1", config_dir=config_dir)
    # What one day's tasks read: the marts the owners, the gate quality.yaml, the rules and delivery rules.yaml.
    owners, rules, quality = run.owners, run.rules, run.quality
    assert (run.owners, run.rules, run.quality) == (owners, rules, quality)
    assert context.rules_config(config_dir) is rules and context.owners_config(config_dir) is owners
    assert parses == {"owners.yaml": 1, "premium.yaml": 1, "annotations.yaml": 1, "rules.yaml": 1,
                      "quality.yaml": 1}


def test_an_edited_file_is_read_again_and_a_broken_one_fails_every_time(config_dir, parses):
    before = context.owners_config(config_dir)
    owners_file = config_dir / "owners.yaml"
    owners_file.write_text(owners_file.read_text() + "\n# edited\n")
    after = context.owners_config(config_dir)
    assert after is not before and parses["owners.yaml"] == 2
    assert after.file_sha256["owners.yaml"] != before.file_sha256["owners.yaml"]

    rules_file = config_dir / "rules.yaml"
    rules_file.write_text(rules_file.read_text().replace("rules:", "rulez:", 1))
    for _ in range(2):
        with pytest.raises(ConfigError, match="rules.yaml"):
            context.rules_config(config_dir)
    assert parses["rules.yaml"] == 2


def test_the_usage_day_is_the_data_interval_start_and_ends_at_the_next_midnight():
    run = context.RunContext.from_interval(datetime(2026, 3, 1, tzinfo=UTC), "scheduled__2026-03-01")
    assert (run.day, run.run_id) == (date(2026, 3, 1), "scheduled__2026-03-01")
    assert context.day_start(run.day) == datetime(2026, 3, 1, tzinfo=UTC)
    assert context.day_end(run.day) == datetime(2026, 3, 2, tzinfo=UTC)
    assert run.paths == settings.paths()
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.day = date(2026, 3, 2)


class _Run:
    def __init__(self, logical_date):
        self.dag_id, self.logical_date = "openrouter_spend_daily", logical_date


class _TaskInstance:
    def __init__(self, existing: int):
        self.existing, self.asked = existing, []

    def get_dr_count(self, dag_id, logical_dates):
        self.asked.append((dag_id, logical_dates))
        return self.existing


def test_a_manual_run_off_midnight_for_a_day_that_has_its_run_is_refused():
    from airflow.sdk.exceptions import AirflowFailException

    from openrouter_spend.dag_tasks import refuse_second_run_of_day

    day = datetime(2026, 3, 1, tzinfo=UTC)
    triggered = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # covers 1 March, under another logical date
    done = _TaskInstance(existing=1)
    with pytest.raises(AirflowFailException, match="2026-03-01 already has its run"):
        refuse_second_run_of_day({"dag_run": _Run(triggered), "data_interval_start": day, "ti": done})
    assert done.asked == [("openrouter_spend_daily", [day])]
    # The day's first run goes ahead, and so does the day's own run (scheduled or `openrouter-spend run`).
    refuse_second_run_of_day({"dag_run": _Run(triggered), "data_interval_start": day, "ti": _TaskInstance(0)})
    own = _TaskInstance(existing=1)
    refuse_second_run_of_day({"dag_run": _Run(day), "data_interval_start": day, "ti": own})
    assert own.asked == []
