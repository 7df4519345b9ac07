from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from scoring_helpers import manifest_bytes, model_bytes, write_model_dir

from cep.errors import ModelError
from cep.scoring import ModelRegistry, UnknownModelError

COLUMNS: dict[str, Sequence[object]] = {
    "amount": [5.0, 900.0],
    "hour": [12, 3],
    "foreign": [False, True],
}


def loaded(*kinds: tuple[str, str, str]) -> ModelRegistry:
    registry = ModelRegistry()
    for name, kind, output in kinds:
        data = model_bytes(kind)
        registry.put(name, data, manifest_bytes(data, name=name, output=output))
    return registry


def test_put_get_names_versions_and_feature_names() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"), ("txn_anomaly", "iforest", "anomaly"))
    assert registry.names() == ("txn_anomaly", "txn_risk")
    assert registry.get("txn_risk").manifest.output == "proba"
    assert registry.version("txn_risk") == 1
    assert registry.feature_names() == {
        "txn_anomaly": ("amount", "hour", "foreign"),
        "txn_risk": ("amount", "hour", "foreign"),
    }
    data = model_bytes("pipeline")
    replaced = registry.put("txn_risk", data, manifest_bytes(data, name="txn_risk"))
    assert registry.get("txn_risk") is replaced
    assert registry.version("txn_risk") == 2
    assert registry.version("txn_anomaly") == 1


def test_unknown_names_are_model_errors_and_key_errors() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    with pytest.raises(UnknownModelError) as info:
        registry.get("nope")
    assert isinstance(info.value, ModelError) and isinstance(info.value, KeyError)
    assert str(info.value) == "no model named 'nope' is loaded (loaded: txn_risk); upload it first"
    with pytest.raises(KeyError):
        registry.remove("nope")
    with pytest.raises(KeyError):
        registry.version("nope")


def test_remove_and_the_version_keeps_counting() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    registry.remove("txn_risk")
    assert registry.names() == ()
    with pytest.raises(UnknownModelError):
        registry.get("txn_risk")
    data = model_bytes("hgb")
    registry.put("txn_risk", data, manifest_bytes(data))
    assert registry.version("txn_risk") == 2


def test_a_failed_upload_leaves_the_previous_model_active() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    before = registry.get("txn_risk")
    expected = before.score_batch(COLUMNS).tolist()
    good = model_bytes("pipeline")
    truncated = good[: len(good) // 2]
    with pytest.raises(ModelError, match="corrupt or truncated"):
        registry.put("txn_risk", truncated, manifest_bytes(truncated))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        registry.put("txn_risk", good, manifest_bytes(truncated))
    with pytest.raises(ModelError, match="invalid manifest"):
        registry.put("txn_risk", good, b'{"name": "txn_risk"}')
    with pytest.raises(ModelError, match="uploaded as 'txn_risk'"):
        registry.put("txn_risk", good, manifest_bytes(good, name="other"))
    assert registry.get("txn_risk") is before
    assert registry.version("txn_risk") == 1
    assert registry.get("txn_risk").score_batch(COLUMNS).tolist() == expected


def test_a_snapshot_does_not_change_under_a_swap() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    snapshot = registry.snapshot()
    first = snapshot["txn_risk"]
    data = model_bytes("logreg")
    registry.put("txn_risk", data, manifest_bytes(data))
    registry.remove("txn_risk")
    assert snapshot["txn_risk"] is first
    with pytest.raises(TypeError):
        snapshot["x"] = first  # type: ignore[index]


def test_put_persists_and_load_dir_reads_it_back(tmp_path: Path) -> None:
    registry = loaded()
    data = model_bytes("hgb")
    registry.put("txn_risk", data, manifest_bytes(data, description="v1"), persist_dir=tmp_path)
    directory = tmp_path / "txn_risk"
    assert (directory / "model.skops").read_bytes() == data
    manifest = orjson.loads((directory / "manifest.json").read_bytes())
    assert manifest["description"] == "v1"
    # an upload under another file name replaces the old file
    data2 = model_bytes("pipeline")
    registry.put("txn_risk", data2, manifest_bytes(data2, file="v2.skops"), persist_dir=tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "v2.skops"]
    fresh = ModelRegistry()
    assert fresh.load_dir(tmp_path) == []
    assert fresh.get("txn_risk").score_batch(COLUMNS).tolist() == (
        registry.get("txn_risk").score_batch(COLUMNS).tolist()
    )
    registry.remove("txn_risk", persist_dir=tmp_path)
    assert not directory.exists()
    assert ModelRegistry().load_dir(tmp_path) == []


def test_a_failed_upload_does_not_touch_persisted_files(tmp_path: Path) -> None:
    registry = loaded()
    data = model_bytes("hgb")
    registry.put("txn_risk", data, manifest_bytes(data), persist_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "txn_risk").iterdir()}
    bad = b"PK\x03\x04 not really"
    with pytest.raises(ModelError):
        registry.put("txn_risk", bad, manifest_bytes(bad), persist_dir=tmp_path)
    after = {p.name: p.read_bytes() for p in (tmp_path / "txn_risk").iterdir()}
    assert after == before


def test_load_dir_reports_bad_models_without_raising(tmp_path: Path) -> None:
    good = model_bytes("hgb")
    write_model_dir(tmp_path, good, name="good")
    write_model_dir(tmp_path, model_bytes("iforest"), name="anomaly", output="anomaly")
    # sha256 mismatch
    bad_sha = write_model_dir(tmp_path, good, name="tampered")
    (bad_sha / "model.skops").write_bytes(good[:-10] + b"0123456789")
    # truncated file whose manifest matches it
    truncated = good[:1000]
    write_model_dir(tmp_path, truncated, name="truncated")
    # manifest problems
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_bytes(b"{not json")
    write_model_dir(tmp_path, good, name="renamed")
    (tmp_path / "renamed").rename(tmp_path / "misnamed")
    missing = write_model_dir(tmp_path, good, name="missing")
    (missing / "model.skops").unlink()
    # a pickle
    pickled = write_model_dir(tmp_path, b"\x80\x04junk", name="pickled", file="model.pkl")
    assert pickled.exists()
    # not models: ignored
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "empty").mkdir()
    write_model_dir(tmp_path / ".hidden", good, name="good")

    registry = ModelRegistry()
    errors = registry.load_dir(tmp_path)
    assert registry.names() == ("anomaly", "good")
    reported = {name: str(err) for name, err in errors}
    assert sorted(reported) == ["broken", "misnamed", "missing", "pickled", "tampered", "truncated"]
    assert all(isinstance(err, ModelError) for _, err in errors)
    assert "sha256 mismatch" in reported["tampered"]
    assert "corrupt or truncated" in reported["truncated"]
    assert "not valid JSON" in reported["broken"]
    assert "its directory is 'misnamed'" in reported["misnamed"]
    assert "cannot read model file" in reported["missing"]
    assert "arbitrary code" in reported["pickled"]
    assert str(tmp_path / "truncated" / "model.skops") in reported["truncated"]


def test_load_dir_failure_keeps_the_model_already_loaded(tmp_path: Path) -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    before = registry.get("txn_risk")
    broken = model_bytes("pipeline")[:500]
    write_model_dir(tmp_path, broken, name="txn_risk")
    errors = registry.load_dir(tmp_path)
    assert [name for name, _ in errors] == ["txn_risk"]
    assert registry.get("txn_risk") is before


def test_readers_always_see_a_whole_model_during_swaps() -> None:
    registry = loaded(("txn_risk", "hgb", "proba"))
    uploads = [model_bytes("hgb"), model_bytes("pipeline")]
    stop = threading.Event()
    seen: list[object] = []

    def read() -> None:
        while not stop.is_set():
            model = registry.snapshot()["txn_risk"]
            seen.append(model.score_batch(COLUMNS).shape)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(6):
        data = uploads[i % 2]
        registry.put("txn_risk", data, manifest_bytes(data))
    stop.set()
    reader.join()
    assert registry.version("txn_risk") == 7
    assert set(seen) <= {(2,)}
