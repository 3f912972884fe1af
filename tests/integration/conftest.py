"""Real servers shared by the integration tests of a session."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest

from tests.support.servers.postgres import Postgres
from tests.support.servers.prometheus import Prometheus
from tests.support.servers.prometheus import start as start_prometheus
from tests.support.servers.unleash import Unleash
from tests.support.servers.unleash import start as start_unleash


@pytest.fixture
def database(postgres: Postgres, request: pytest.FixtureRequest) -> str:
    """A fresh database for the test (the session's server is shared, Unleash included): its name."""
    digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]  # parametrised names differ at the end
    name = f"pgtest_{re.sub(r'[^a-z0-9]+', '_', request.node.name.lower())[:40]}_{digest}"
    postgres.create_database(name)
    return name


@pytest.fixture(scope="session")
def unleash(postgres: Postgres) -> Iterator[Unleash]:
    """One Unleash 8.2.0 for the session, on its own database in the session's PostgreSQL."""
    server = start_unleash(postgres)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    """One Prometheus 2.x with the remote-write receiver and the admin API, for the session."""
    server = start_prometheus()
    yield server
    server.stop()
