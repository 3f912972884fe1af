"""Shared fixtures: a minimal valid spec as a raw mapping, for tests to mutate one field at a time."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import replay_guard
from tests.support.servers.postgres import Postgres
from tests.support.servers.postgres import start as start_postgres

BASE_SPEC: dict[str, Any] = {
    "name": "ui-test-exp",
    "domain": "ui",
    "treatment_spec": {"control": {"color": "grey"}, "treatment": {"color": "green"}},
    "primary_metric": "checkout_conv",
    "guardrails": [{"name": "error_rate", "threshold": 0.01, "direction": "<"}],
    "mde": {"kind": "relative", "value": 5},
    "max_duration_days": 14,
    "max_concurrent": 5,
}


@pytest.fixture
def raw_spec() -> dict[str, Any]:
    return copy.deepcopy(BASE_SPEC)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL for the session's integration tests; each test creates its own database."""
    server = start_postgres()
    yield server
    server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The replay guard (tests/support/replay_guard.py): one nondeterministic history fails the run."""
    outcome = replay_guard.replay_all()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [outcome.line(), *(f"  NONDETERMINISTIC {failure}" for failure in outcome.failures)]
    if reporter is not None:
        reporter.write("\n")
        for line in lines:
            reporter.write_line(line, red=bool(outcome.failures))
    if outcome.failures:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
