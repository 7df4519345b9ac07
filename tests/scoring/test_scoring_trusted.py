"""The pinned allow-list matches what our supported models need: no more, no less.

When a scikit-learn or skops upgrade changes the types a fitted model holds, this
fails and names them. Review each one before editing `cep/scoring/trusted.py`.
"""

from __future__ import annotations

import skops.io
from scoring_helpers import model_bytes

from cep.scoring.loader import skops_types
from cep.scoring.trusted import ALLOWED_TYPES, MODEL_TYPES, SKOPS_TRUSTED

KINDS = ["hgb", "hgb_multi", "hgb_str", "iforest", "iforest10", "logreg", "pipeline"]


def test_every_type_our_models_hold_is_allowed() -> None:
    found: set[str] = set()
    for kind in KINDS:
        found |= skops_types(model_bytes(kind))
    assert sorted(found - ALLOWED_TYPES) == []
    assert sorted(MODEL_TYPES - found) == [], "pinned but no longer needed"


def test_skops_trusted_is_exactly_what_skops_flags_for_our_models() -> None:
    flagged: set[str] = set()
    for kind in KINDS:
        flagged.update(skops.io.get_untrusted_types(data=model_bytes(kind)))
    assert sorted(flagged) == sorted(SKOPS_TRUSTED)
