from __future__ import annotations

import functools
import io
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from scoring_helpers import fit, fitted, manifest_dict, model_bytes, training_data
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from cep.errors import ModelError
from cep.scoring import Manifest, Model, load_model, load_model_bytes
from cep.scoring.loader import skops_types
from cep.scoring.trusted import ALLOWED_TYPES

REPO = Path(__file__).resolve().parents[2]


def manifest_for(data: bytes, **kw: object) -> Manifest:
    return Manifest.from_json(manifest_dict(data, **kw))  # type: ignore[arg-type]


def refused(data: bytes, source: str = "upload", **kw: object) -> str:
    with pytest.raises(ModelError) as info:
        load_model_bytes(data, manifest_for(data, **kw), source)
    return str(info.value)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class Wrapped(LogisticRegression):  # type: ignore[misc]
    """A custom estimator class: skops can save it, we must not build it."""


# ------------------------------------------------------------------ good files


@pytest.mark.parametrize(
    ("kind", "output"),
    [("hgb", "proba"), ("iforest", "anomaly"), ("logreg", "proba"), ("pipeline", "decision")],
)
def test_loads_supported_models(tmp_path: Path, kind: str, output: str) -> None:
    data = model_bytes(kind)
    model = load_model(write(tmp_path, "model.skops", data), manifest_for(data, output=output))
    assert isinstance(model, Model)
    assert model.manifest.output == output
    assert model.load_warnings == ()


# ------------------------------------------------------------------ pickles


def test_refuses_a_real_pickle_even_with_a_skops_name_and_right_sha() -> None:
    data = pickle.dumps(fitted("logreg"))
    message = refused(data)
    assert "pickle" in message
    assert "unpickling runs arbitrary code" in message
    assert "skops.io.dump" in message


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.joblib", "m.joblib.gz"])
def test_refuses_pickle_file_names(tmp_path: Path, name: str) -> None:
    data = model_bytes("logreg")  # even a valid skops file: the name says pickle
    with pytest.raises(ModelError, match="arbitrary code") as info:
        load_model(write(tmp_path, name, data), manifest_for(data, file=name))
    assert name in str(info.value)
    assert "skops.io.dump" in str(info.value)


def test_refuses_joblib_dumps_by_name_and_by_content(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(fitted("logreg"), path)
    data = path.read_bytes()
    with pytest.raises(ModelError, match="unpickling runs arbitrary code"):
        load_model(path, manifest_for(data, file="model.joblib"))
    # renamed to look like a skops file: refused by its pickle header
    assert "pickle protocol" in refused(data)
    compressed = tmp_path / "c.joblib"
    joblib.dump(fitted("logreg"), compressed, compress=3)
    assert "zlib-compressed" in refused(compressed.read_bytes())
    lzma = tmp_path / "c.xz"
    joblib.dump(fitted("logreg"), lzma, compress=("xz", 1))
    assert "xz-compressed" in refused(lzma.read_bytes())


def test_refuses_a_zip_holding_a_pickle() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:  # the shape of a torch.save file
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}))
    message = refused(buffer.getvalue())
    assert "holds pickles" in message and "arbitrary code" in message


def test_refuses_a_zip_that_is_not_skops() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("weights.txt", "1 2 3")
    assert "not a skops archive (no schema.json)" in refused(buffer.getvalue())


def test_refuses_unknown_formats() -> None:
    assert "not a skops archive" in refused(b"(lp0\nI1\na.")  # a protocol 0 pickle
    assert "not a skops archive" in refused(b"")


# ------------------------------------------------------------------ untrusted types


def test_refuses_a_custom_class_naming_it() -> None:
    x, y = training_data()
    model = fit(Wrapped(max_iter=500), np.nan_to_num(x), y)
    message = refused(skops.io.dumps(model))
    assert "not on cep's allow-list" in message
    assert f"{__name__}.Wrapped" in message


def test_refuses_functools_partial_naming_it() -> None:
    x, y = training_data()
    pipe = make_pipeline(
        FunctionTransformer(functools.partial(np.nan_to_num, nan=0.0)), LogisticRegression()
    )
    fit(pipe, x, y)
    message = refused(skops.io.dumps(pipe))
    assert "functools.partial" in message
    assert "FunctionTransformer" in message


def test_refuses_an_estimator_skops_trusts_by_default_but_we_do_not() -> None:
    x, y = training_data()
    data = skops.io.dumps(fit(GaussianNB(), np.nan_to_num(x), y))
    assert skops.io.get_untrusted_types(data=data) == []  # skops alone would load it
    assert "sklearn.naive_bayes.GaussianNB" in refused(data)


def test_skops_types_lists_every_type_in_the_archive() -> None:
    types = skops_types(model_bytes("pipeline"))
    assert "sklearn.pipeline.Pipeline" in types
    assert "sklearn.preprocessing._data.StandardScaler" in types
    assert types <= ALLOWED_TYPES


# ------------------------------------------------------------------ integrity


def test_refuses_a_sha256_mismatch() -> None:
    data = model_bytes("hgb")
    manifest = manifest_for(data, sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch") as info:
        load_model_bytes(data, manifest, "models/txn_risk/model.skops")
    assert "models/txn_risk/model.skops" in str(info.value)
    assert "sha256sum" in str(info.value)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_file_names_the_file(tmp_path: Path, cut: float) -> None:
    data = model_bytes("hgb")
    broken = data[: int(len(data) * cut)]
    path = write(tmp_path, "model.skops", broken)
    with pytest.raises(ModelError) as info:
        load_model(path, manifest_for(broken))
    assert str(path) in str(info.value)
    assert "corrupt or truncated" in str(info.value)


def test_flipped_bytes_inside_the_archive_are_a_model_error(tmp_path: Path) -> None:
    data = bytearray(model_bytes("iforest"))
    start = data.index(b"\x93NUMPY")  # inside the first stored array
    data[start + 200 : start + 208] = b"\xff" * 8
    path = write(tmp_path, "model.skops", bytes(data))
    with pytest.raises(ModelError, match="corrupt or truncated") as info:
        load_model(path, manifest_for(bytes(data)))
    assert str(path) in str(info.value)


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(tmp_path / "model.skops", manifest_for(b""))


# ------------------------------------------------------------------ structure


def test_refuses_a_tree_whose_child_index_points_outside_it() -> None:
    x, _ = training_data()
    forest = fit(IsolationForest(n_estimators=3, random_state=1), x)
    forest.estimators_[1].tree_.children_left[0] = 10**6  # a crafted file
    message = refused(skops.io.dumps(forest), output="anomaly")
    assert "tree 1" in message and "child index is out of range" in message


def test_refuses_a_tree_split_on_a_feature_that_does_not_exist() -> None:
    x, y = training_data()
    model = fit(HistGradientBoostingClassifier(max_iter=2, random_state=0), x, y)
    nodes = model._predictors[1][0].nodes
    nodes["feature_idx"][np.flatnonzero(nodes["is_leaf"] == 0)[0]] = 7
    assert "outside 0..2" in refused(skops.io.dumps(model))


def test_refuses_a_hgb_tree_whose_children_point_backwards() -> None:
    x, y = training_data()
    model = fit(HistGradientBoostingClassifier(max_iter=2, random_state=0), x, y)
    model._predictors[0][0].nodes["left"][0] = 0  # a cycle: the walk would never end
    assert "child index is out of range" in refused(skops.io.dumps(model))


# ------------------------------------------------------------------ manifest fit


def test_refuses_a_feature_count_mismatch() -> None:
    data = model_bytes("hgb")
    manifest = manifest_dict(data)
    manifest["features"] = manifest["features"][:2]
    with pytest.raises(ModelError, match="fitted on 3 feature"):
        load_model_bytes(data, Manifest.from_json(manifest), "upload")


def test_refuses_anomaly_output_for_a_classifier() -> None:
    assert "needs an IsolationForest" in refused(model_bytes("hgb"), output="anomaly")


def test_refuses_proba_for_an_isolation_forest() -> None:
    assert "needs a model with predict_proba" in refused(model_bytes("iforest"), output="proba")


def test_refuses_an_unknown_positive_class() -> None:
    assert "positive_class 'fraud' is not one of" in refused(
        model_bytes("hgb"), positive_class="fraud"
    )


def test_multiclass_decision_needs_a_positive_class() -> None:
    assert "needs positive_class" in refused(model_bytes("hgb_multi"), output="decision")


# ------------------------------------------------------------------ shipped models


@pytest.mark.parametrize("name", ["txn_risk", "txn_anomaly"])
def test_shipped_example_models_load(name: str) -> None:
    directory = REPO / "models" / name
    if not (directory / "manifest.json").exists():
        pytest.skip(f"models/{name} not trained (run python models/train.py)")
    manifest = Manifest.from_json((directory / "manifest.json").read_bytes())
    model = load_model(directory / manifest.file, manifest)
    assert model.manifest.feature_names == ("amount", "hour", "foreign")
    scores = model.score_batch(
        {"amount": [12.0, 4999.0, None], "hour": [13, 3, 3], "foreign": [False, True, True]}
    )
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
