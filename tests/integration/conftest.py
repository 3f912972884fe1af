"""Real servers shared by the integration tests of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgres import Postgres
from tests.servers.unleash import Unleash
from tests.servers.unleash import start as start_unleash


@pytest.fixture(scope="session")
def unleash(postgres: Postgres) -> Iterator[Unleash]:
    """One Unleash 8.2.0 for the session, on its own database in the session's PostgreSQL."""
    server = start_unleash(postgres)
    yield server
    server.stop()
