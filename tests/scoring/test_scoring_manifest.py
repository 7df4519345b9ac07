from __future__ import annotations

import pytest
from scoring_helpers import manifest_dict

from cep.errors import CepError, ModelError
from cep.scoring import Feature, Manifest

SHA = "ab" * 32


def valid(**changes: object) -> dict[str, object]:
    data = manifest_dict(b"", name="txn_risk")
    data["sha256"] = SHA
    data.update(changes)
    return data


def problems(data: object) -> str:
    with pytest.raises(ModelError) as info:
        Manifest.from_json(data)  # type: ignore[arg-type]
    return str(info.value)


def test_parses_a_valid_manifest_from_bytes_and_round_trips() -> None:
    m = Manifest.from_json(
        b'{"name": "txn_risk", "version": 2, "file": "model.skops", "sha256": "'
        + SHA.upper().encode()
        + b'", "features": [{"name": "amount", "type": "float"},'
        b' {"name": "foreign", "type": "bool", "default": 1}],'
        b' "output": "proba", "positive_class": 1, "description": "risk"}'
    )
    assert m == Manifest(
        name="txn_risk",
        version=2,
        file="model.skops",
        sha256=SHA,
        features=(Feature("amount", "float"), Feature("foreign", "bool", 1.0)),
        output="proba",
        positive_class=1,
        description="risk",
    )
    assert m.feature_names == ("amount", "foreign")
    assert Manifest.from_json(m.to_json()) == m
    assert Manifest.from_json(m.to_bytes()) == m


def test_optional_fields_default() -> None:
    m = Manifest.from_json(valid(output="anomaly"))
    assert m.positive_class is None and m.description is None
    assert "positive_class" not in m.to_json()
    assert m.features[1] == Feature("hour", "int", 12.0)
    assert m.features[0].default == 0.0


def test_is_frozen() -> None:
    m = Manifest.from_json(valid())
    with pytest.raises(AttributeError):
        m.version = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "9lives"}, "name must be an identifier"),
        ({"name": "a-b"}, "name must be an identifier"),
        ({"version": 0}, "version must be an integer >= 1"),
        ({"version": "1"}, "version must be an integer >= 1"),
        ({"version": True}, "version must be an integer >= 1"),
        ({"file": "../etc/passwd"}, "file must be a plain file name"),
        ({"file": ".hidden"}, "file must be a plain file name"),
        ({"file": "manifest.json"}, "file must be a plain file name"),
        ({"sha256": "abc"}, "sha256 must be the 64 hex digits"),
        ({"features": []}, "features must be a non-empty list"),
        ({"features": "amount"}, "features must be a non-empty list"),
        ({"features": ["amount"]}, "features[0] must be an object"),
        ({"features": [{"name": "a", "type": "str"}]}, "features[0].type must be one of"),
        ({"features": [{"name": "a b", "type": "int"}]}, "features[0].name must be"),
        ({"features": [{"name": "a", "type": "int", "default": "x"}]}, "default must be a finite"),
        ({"features": [{"name": "a", "type": "int", "default": float("nan")}]}, "finite"),
        ({"features": [{"name": "a", "type": "int", "unit": "s"}]}, "unknown key(s) unit"),
        (
            {"features": [{"name": "a", "type": "int"}, {"name": "a", "type": "float"}]},
            "duplicate feature name 'a'",
        ),
        ({"output": "probability"}, "output must be one of proba, decision, anomaly"),
        ({"positive_class": 1.5}, "positive_class must be an integer or a string"),
        ({"positive_class": True}, "positive_class must be an integer or a string"),
        ({"output": "anomaly", "positive_class": 1}, "only applies to output proba or decision"),
        ({"description": 3}, "description must be a string"),
        ({"extra": 1}, "unknown key(s) extra"),
    ],
)
def test_rejects_each_bad_field(changes: dict[str, object], expected: str) -> None:
    message = problems(valid(**changes))
    assert expected in message
    assert "fix manifest.json" in message


def test_reports_every_problem_at_once() -> None:
    data = valid(version=-1, output="nope")
    del data["sha256"]
    message = problems(data)
    assert "missing required key(s) sha256" in message
    assert "version must be" in message
    assert "output must be" in message
    assert "txn_risk" in message


def test_rejects_bad_json_and_non_objects() -> None:
    assert "not valid JSON" in problems(b"{nope")
    assert "must hold a JSON object" in problems(b"[1, 2]")
    with pytest.raises(ModelError) as err:
        Manifest.from_json(b"{")
    assert isinstance(err.value, CepError)
