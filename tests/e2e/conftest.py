"""Fixtures of the e2e tests: the private dockerd's address."""

from __future__ import annotations

import pytest

from tests.realservices import require


@pytest.fixture(scope="session")
def docker_host() -> str:
    """``DOCKER_HOST`` of the private test dockerd (a unix socket, never the system one)."""
    return require("docker")
