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
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

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


def purchases(events: list[dict[str, object]]) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
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


def report(name: str, y: npt.NDArray[np.bool_], scores: FloatArray, threshold: float) -> None:
    auc = roc_auc_score(y, scores)
    ap = average_precision_score(y, scores)
    hit = float(np.mean(scores[y] > threshold))
    false = int(np.sum(scores[~y] > threshold))
    print(
        f"  {name:<12} ROC AUC {auc:.4f}  average precision {ap:.4f}  "
        f"{TARGET} purchases > {threshold}: {hit:.1%}  others > {threshold}: {false} "
        f"of {int(np.sum(~y))}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="models directory")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    x_train, y_train = purchases(generate(TRAIN_EVENTS, seed=TRAIN_SEED))
    x_eval, y_eval = purchases(generate(EVAL_EVENTS, seed=EVAL_SEED))
    print(
        f"training on {len(x_train)} purchases ({int(y_train.sum())} {TARGET}) from "
        f"generate({TRAIN_EVENTS}, seed={TRAIN_SEED}); evaluating on {len(x_eval)} "
        f"({int(y_eval.sum())} {TARGET}) from generate({EVAL_EVENTS}, seed={EVAL_SEED})"
    )
    with threadpool_limits(limits=1):
        risk = fit_risk(x_train, y_train)
        anomaly = fit_anomaly(x_train)
    saved = [
        save(
            args.out,
            "txn_risk",
            risk,
            "proba",
            "Risk that a purchase is part of a risky burst (large, abroad, at night): "
            "HistGradientBoosting on synthetic data, class-balanced, not calibrated.",
            x_eval,
        ),
        save(
            args.out,
            "txn_anomaly",
            anomaly,
            "anomaly",
            "How unusual a purchase is (0..1; above 0.5: the top 1% of training "
            "purchases): IsolationForest on synthetic data.",
            x_eval,
        ),
    ]
    for manifest, data in saved:
        print(
            f"  wrote {args.out / manifest.name}/model.skops  {len(data) / 1024:.0f} KiB  "
            f"sha256 {manifest.sha256}"
        )
    print(f"held-out evaluation (target: {TARGET}):")
    report("txn_risk", y_eval, risk.predict_proba(x_eval)[:, 1], 0.9)
    anomaly_model = load_model_bytes(saved[1][1], saved[1][0], "txn_anomaly")
    columns = {"amount": x_eval[:, 0], "hour": x_eval[:, 1], "foreign": x_eval[:, 2]}
    report("txn_anomaly", y_eval, anomaly_model.score_batch(columns), 0.5)
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
