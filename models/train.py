"""Train the example models from synthetic data and write them with their manifests.

    python models/train.py            # writes models/txn_risk/ and models/txn_anomaly/

Both models score card purchases on three features: `amount` (float), `hour` (int,
the UTC hour of `ts`) and `foreign` (bool, `country != home_country`), the features
the `risky_burst` example pattern passes:

    let risk = score(txn_risk, amount=amount, hour=hour(ts), foreign=country != home_country)

- `txn_risk`: HistGradientBoostingClassifier, output `proba`. Target: the purchase
  belongs to an injected `risky_burst` incident (label "risky_burst:<n>"). Other
  incident kinds are not targets: their purchases (card tests, declines, impossible
  travel) look ordinary one by one and are caught by their own patterns from the
  sequence, so as positives they would only blur the score. Classes are weighted
  ("balanced"): near misses (e.g. two risky purchases instead of three) are
  unlabelled but look the same one purchase at a time, so a calibrated probability
  would top out around 0.8 and `risk > 0.9` would never hold. The score is therefore
  "how much this purchase looks like a risky-burst purchase", not a calibrated
  fraud probability.
- `txn_anomaly`: IsolationForest (unsupervised, labels unused), output `anomaly`.
  `contamination=0.01`, so an anomaly score above 0.5 means "among the 1% most
  unusual purchases of the training data" (see `cep.scoring.model`).

Deterministic: fixed seeds, one thread while fitting (OpenMP sums gradients per
thread, so the thread count would change the last bits), and byte-stable archives
(`cep.scoring.canonical`). Running it twice writes files with the same sha256, for the
same versions of numpy, scikit-learn, skops and zlib.

The steps are importable (`notebooks/model_training.ipynb` uses them on a smaller
stream): `load_data`, `fit_models`, `save_models`, `evaluate`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python models/train.py` from a checkout

from cep.scoring.canonical import canonical_skops  # noqa: E402
from cep.scoring.loader import load_model_bytes  # noqa: E402
from cep.scoring.manifest import Manifest  # noqa: E402
from cep.scoring.trusted import SKOPS_TRUSTED  # noqa: E402
from cep.synth import generate  # noqa: E402

TRAIN_EVENTS, TRAIN_SEED = 400_000, 7
EVAL_EVENTS, EVAL_SEED = 200_000, 8  # held out: another seed, another stream
TARGET = "risky_burst"
FEATURES = [
    {"name": "amount", "type": "float"},
    {"name": "hour", "type": "int"},
    {"name": "foreign", "type": "bool"},
]
HOUR_MS = 3_600_000

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
RISK_DESCRIPTION = (
    "Risk that a purchase is part of a risky burst (large, abroad, at night): "
    "HistGradientBoosting on synthetic data, class-balanced, not calibrated."
)
ANOMALY_DESCRIPTION = (
    "How unusual a purchase is (0..1; above 0.5: the top 1% of training "
    "purchases): IsolationForest on synthetic data."
)
RISK_THRESHOLD, ANOMALY_THRESHOLD = 0.9, 0.5  # what risky_burst-style patterns test


class Data(NamedTuple):
    """Feature rows and targets of the training and the held-out stream."""

    x_train: FloatArray
    y_train: BoolArray
    x_eval: FloatArray
    y_eval: BoolArray


def purchases(events: list[dict[str, object]]) -> tuple[FloatArray, BoolArray]:
    """Feature rows (amount, hour, foreign) and targets for every purchase."""
    rows: list[tuple[float, int, bool]] = []
    target: list[bool] = []
    for e in events:
        if e["stream"] != "transactions" or e["type"] != "purchase":
            continue
        ts, amount = e["ts"], e["amount"]
        assert isinstance(ts, int) and isinstance(amount, (int, float))
        rows.append((float(amount), ts // HOUR_MS % 24, e["country"] != e["home_country"]))
        target.append(str(e.get("label", "")).startswith(TARGET + ":"))
    return np.array(rows, dtype=np.float64), np.array(target, dtype=bool)


def fit_risk(x: FloatArray, y: npt.NDArray[np.bool_]) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        max_iter=50,
        max_leaf_nodes=8,
        learning_rate=0.1,
        l2_regularization=1.0,  # separable classes: keeps leaf values finite
        class_weight="balanced",
        early_stopping=False,  # no random validation split; always 50 trees
        random_state=0,
    )
    return model.fit(x, y.astype(np.int64))


def fit_anomaly(x: FloatArray) -> IsolationForest:
    model = IsolationForest(n_estimators=50, max_samples=128, contamination=0.01, random_state=0)
    return model.fit(x)


def save(
    out: Path, name: str, estimator: Any, output: str, description: str, check: FloatArray
) -> tuple[Manifest, bytes]:
    """Write NAME/model.skops and NAME/manifest.json, after checking that the file loads
    through cep's loader and predicts exactly what the fitted estimator does."""
    data = canonical_skops(skops.io.dumps(estimator))
    manifest = Manifest.from_json(
        {
            "name": name,
            "version": 1,
            "file": "model.skops",
            "sha256": hashlib.sha256(data).hexdigest(),
            "features": FEATURES,
            "output": output,
            **({"positive_class": 1} if output == "proba" else {}),
            "description": description,
        }
    )
    load_model_bytes(data, manifest, f"{name}/model.skops")
    reloaded = skops.io.loads(data, trusted=list(SKOPS_TRUSTED))
    method = "predict_proba" if output == "proba" else "score_samples"
    if not np.array_equal(getattr(reloaded, method)(check), getattr(estimator, method)(check)):
        raise SystemExit(f"{name}: the saved model does not predict what the fitted one does")
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.skops").write_bytes(data)
    (directory / "manifest.json").write_bytes(manifest.to_bytes())
    return manifest, data


def load_data(
    train_events: int = TRAIN_EVENTS,
    train_seed: int = TRAIN_SEED,
    eval_events: int = EVAL_EVENTS,
    eval_seed: int = EVAL_SEED,
) -> Data:
    """Purchases of `generate(train_events, train_seed)` to train on and of
    `generate(eval_events, eval_seed)` (another stream) to evaluate on."""
    x_train, y_train = purchases(generate(train_events, seed=train_seed))
    x_eval, y_eval = purchases(generate(eval_events, seed=eval_seed))
    return Data(x_train, y_train, x_eval, y_eval)


def fit_models(
    x_train: FloatArray, y_train: BoolArray
) -> tuple[HistGradientBoostingClassifier, IsolationForest]:
    """Both example models, fitted on one thread (so the result is bit-reproducible)."""
    with threadpool_limits(limits=1):
        return fit_risk(x_train, y_train), fit_anomaly(x_train)


def save_models(
    out: Path, risk: HistGradientBoostingClassifier, anomaly: IsolationForest, check: FloatArray
) -> list[tuple[Manifest, bytes]]:
    """Write OUT/txn_risk and OUT/txn_anomaly (see `save`); (manifest, file bytes) of each."""
    return [
        save(out, "txn_risk", risk, "proba", RISK_DESCRIPTION, check),
        save(out, "txn_anomaly", anomaly, "anomaly", ANOMALY_DESCRIPTION, check),
    ]


def columns(x: FloatArray) -> dict[str, FloatArray]:
    """Feature rows as the named columns `Model.score_batch` takes."""
    return {f["name"]: x[:, i] for i, f in enumerate(FEATURES)}


def metrics(y: BoolArray, scores: FloatArray, threshold: float) -> dict[str, float | int]:
    """ROC AUC, average precision, the share of target purchases scored above
    `threshold` and how many other purchases are."""
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "target_above": float(np.mean(scores[y] > threshold)),
        "others_above": int(np.sum(scores[~y] > threshold)),
        "others": int(np.sum(~y)),
    }


def report(name: str, y: BoolArray, scores: FloatArray, threshold: float) -> None:
    m = metrics(y, scores, threshold)
    print(
        f"  {name:<12} ROC AUC {m['roc_auc']:.4f}  average precision "
        f"{m['average_precision']:.4f}  "
        f"{TARGET} purchases > {threshold}: {m['target_above']:.1%}  others > {threshold}: "
        f"{m['others_above']} of {m['others']}"
    )


def evaluate(
    risk: HistGradientBoostingClassifier, saved: list[tuple[Manifest, bytes]], x_eval: FloatArray
) -> dict[str, FloatArray]:
    """Held-out scores per model, as a pattern sees them: `txn_risk` from the fitted
    classifier (the saved file predicts the same, checked by `save`), `txn_anomaly`
    through cep's loader (the 0..1 normalisation lives there)."""
    manifest, data = saved[1]
    anomaly_model = load_model_bytes(data, manifest, "txn_anomaly")
    return {
        "txn_risk": risk.predict_proba(x_eval)[:, 1],
        "txn_anomaly": anomaly_model.score_batch(columns(x_eval)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="models directory")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    x_train, y_train, x_eval, y_eval = load_data()
    print(
        f"training on {len(x_train)} purchases ({int(y_train.sum())} {TARGET}) from "
        f"generate({TRAIN_EVENTS}, seed={TRAIN_SEED}); evaluating on {len(x_eval)} "
        f"({int(y_eval.sum())} {TARGET}) from generate({EVAL_EVENTS}, seed={EVAL_SEED})"
    )
    risk, anomaly = fit_models(x_train, y_train)
    saved = save_models(args.out, risk, anomaly, x_eval)
    for manifest, data in saved:
        print(
            f"  wrote {args.out / manifest.name}/model.skops  {len(data) / 1024:.0f} KiB  "
            f"sha256 {manifest.sha256}"
        )
    print(f"held-out evaluation (target: {TARGET}):")
    scores = evaluate(risk, saved, x_eval)
    report("txn_risk", y_eval, scores["txn_risk"], RISK_THRESHOLD)
    report("txn_anomaly", y_eval, scores["txn_anomaly"], ANOMALY_THRESHOLD)
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
