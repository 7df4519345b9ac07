from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import skops.io
from scoring_helpers import fit, manifest_dict, training_data
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from cep.errors import ModelError
from cep.scoring import Manifest, load_model_bytes
from cep.scoring.canonical import canonical_skops


def test_equal_models_give_identical_bytes_that_load_and_predict_the_same() -> None:
    x, y = training_data()
    first = fit(HistGradientBoostingClassifier(max_iter=3, random_state=0), x, y)
    second = fit(HistGradientBoostingClassifier(max_iter=3, random_state=0), x, y)
    raw1, raw2 = skops.io.dumps(first), skops.io.dumps(second)
    assert raw1 != raw2  # ids (memory addresses) differ between the two objects
    data = canonical_skops(raw1)
    assert data == canonical_skops(raw2)
    assert canonical_skops(data) == data
    reloaded = skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    assert np.array_equal(reloaded.predict_proba(x), first.predict_proba(x))
    model = load_model_bytes(data, Manifest.from_json(manifest_dict(data)), "canonical")
    assert model.manifest.name == "txn_risk"


def test_members_are_renamed_compressed_and_timeless() -> None:
    x, _ = training_data()
    data = canonical_skops(skops.io.dumps(fit(IsolationForest(n_estimators=2), x)))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    assert infos[0].filename == "schema.json"
    assert [i.filename for i in infos[1:4]] == ["0.npy", "1.npy", "2.npy"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_refuses_non_skops_input() -> None:
    with pytest.raises(ModelError):
        canonical_skops(b"not a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(ModelError, match=r"no schema\.json"):
        canonical_skops(buffer.getvalue())
