from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import TOKEN, make_settings

from service.api.app import create_app


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """`make_client(**settings)` -> a started TestClient over tmp_path; several calls
    with the same tmp_path are restarts of the same service."""
    opened: list[TestClient] = []

    def make(**kw: Any) -> TestClient:
        app = create_app(make_settings(tmp_path, **kw), tick_s=0.05)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in reversed(opened):
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def authed(make_client: Callable[..., TestClient]) -> TestClient:
    """A client of a service with an API token (requests carry no token by default)."""
    return make_client(token=TOKEN)
