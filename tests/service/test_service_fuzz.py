"""Property-based fuzzing of the OpenAPI spec (schemathesis): whatever the requests the
spec allows (and many it does not), no endpoint answers 500, and the responses match
the documented status codes, content types and schemas.

`/alerts/stream` is excluded here (an endless response); test_service_sse.py tests it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_helpers import CARD_TESTING, T0, make_settings

from service.api.app import create_app

# The schema is read at collection (/openapi.json needs no running engine). schemathesis
# runs the app's lifespan around each operation's test, so each starts a fresh service
# over this directory. (Its lazy `from_fixture` loader does not work with pytest 9.)
_TMP = Path(tempfile.mkdtemp(prefix="cep-fuzz-"))
(_TMP / "patterns").mkdir()
(_TMP / "patterns" / "card_testing.cep").write_text(CARD_TESTING)
APP = create_app(make_settings(_TMP), tick_s=0.05)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/alerts/stream")


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # integers beyond 64 bits: orjson refuses them, JSON does not
        return json.dumps(value, default=str).encode()


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    shutil.rmtree(_TMP, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_errors_and_responses_match_the_spec(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance,
    ])


# ---------------------------------------------------------------- deeper: odd events

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(["purchase", "2023-11-14T22:13:20Z", "2023-11-14T22:13:20", "1s"]),
)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
event = st.fixed_dictionaries(
    {},
    optional={"card_id": json_value, "type": st.one_of(st.just("purchase"), json_value),
              "amount": st.one_of(st.floats(0, 2000, allow_nan=False), json_value),
              "ts": st.one_of(st.integers(T0 - 10**6, T0 + 10**9), json_value),
              "id": json_value},
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("fuzz-events")
    with TestClient(create_app(make_settings(tmp), tick_s=0.05)) as c:
        assert c.put("/patterns/card_testing", content=CARD_TESTING).status_code == 201
        yield c


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.one_of(event, json_value), max_size=12))
def test_odd_events_never_break_ingestion_or_dry_runs(
    fuzz_client: TestClient, events: list[Any]
) -> None:
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    r = fuzz_client.post("/events", content=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["received"] == out["accepted"] + out["dead_letters"]
    r = fuzz_client.post("/patterns/test", content=json.dumps(
        {"source": CARD_TESTING, "events": events}))
    assert r.status_code == 200, r.text

