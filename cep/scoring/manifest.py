"""A model's manifest: what the model file is, which features it takes, what it outputs.

A model directory is `models/NAME/manifest.json` plus the model file it names, e.g.

    {
      "name": "txn_risk",
      "version": 3,
      "file": "model.skops",
      "sha256": "9f2c...",
      "features": [
        {"name": "amount", "type": "float"},
        {"name": "hour", "type": "int"},
        {"name": "foreign", "type": "bool", "default": 0}
      ],
      "output": "proba",
      "positive_class": 1,
      "description": "probability that a purchase is part of a fraud incident"
    }

`features` are in the order the model was fitted on. `type` tells pattern authors and
the checker what to pass; at scoring time every value becomes a float64 the same way
(`cep.scoring.features`). `default` is the value a missing feature takes for models
that cannot handle NaN (default 0.0). `output` says what
`score(...)` returns: `proba` (probability of `positive_class`, by default the last
class), `decision` (the model's `decision_function`) or `anomaly` (0..1, higher is
more anomalous). `Manifest.from_json` reports every problem at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

import orjson

from cep.errors import ModelError

FeatureType = Literal["float", "int", "bool"]
Output = Literal["proba", "decision", "anomaly"]

FEATURE_TYPES: tuple[FeatureType, ...] = ("float", "int", "bool")
OUTPUTS: tuple[Output, ...] = ("proba", "decision", "anomaly")

# Model and feature names are written in patterns (`score(txn_risk, amount=amount)`),
# so they must be identifiers.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEYS = ("name", "version", "file", "sha256", "features", "output", "positive_class", "description")
_REQUIRED = ("name", "version", "file", "sha256", "features", "output")
_FEATURE_KEYS = ("name", "type", "default")


@dataclass(frozen=True, slots=True)
class Feature:
    """One model input, in the order the model was fitted on."""

    name: str
    type: FeatureType
    default: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "default": self.default}


@dataclass(frozen=True, slots=True)
class Manifest:
    """The validated contents of a `manifest.json`."""

    name: str
    version: int
    file: str
    sha256: str
    features: tuple[Feature, ...]
    output: Output
    positive_class: int | str | None = None
    description: str | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, object]) -> Manifest:
        """Parse and validate a manifest; raise one `ModelError` listing every problem."""
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise ModelError(
                    f"manifest.json is not valid JSON ({exc}); fix the file and upload it again"
                ) from None
        if not isinstance(data, Mapping):
            raise ModelError(
                "manifest.json must hold a JSON object with the keys " + ", ".join(_REQUIRED)
            )
        return _Validator(data).manifest()

    def to_json(self) -> dict[str, object]:
        """The manifest as a JSON-ready dict; `Manifest.from_json` reads it back."""
        out: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "features": [f.to_json() for f in self.features],
            "output": self.output,
        }
        if self.positive_class is not None:
            out["positive_class"] = self.positive_class
        if self.description is not None:
            out["description"] = self.description
        return out

    def to_bytes(self) -> bytes:
        """`to_json()` serialised as indented JSON with a trailing newline."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n"


class _Validator:
    """Checks one manifest mapping field by field, collecting every problem."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self.data = data
        self.problems: list[str] = []

    def manifest(self) -> Manifest:
        data = self.data
        unknown = sorted(str(k) for k in data if k not in _KEYS)
        if unknown:
            self.problems.append(
                f"unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(_KEYS)}"
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            self.problems.append(f"missing required key(s) {', '.join(missing)}")
        name = self._name(data.get("name"), "name") if "name" in data else ""
        version = self._version(data.get("version")) if "version" in data else 0
        file = self._file(data.get("file")) if "file" in data else ""
        sha256 = self._sha256(data.get("sha256")) if "sha256" in data else ""
        features = self._features(data.get("features")) if "features" in data else ()
        output = self._output(data.get("output")) if "output" in data else "proba"
        positive_class = self._positive_class(data.get("positive_class"), output)
        description = self._description(data.get("description"))
        if self.problems:
            where = f"manifest for model {name!r}" if name else "manifest"
            raise ModelError(
                f"invalid {where}:\n"
                + "\n".join(f"  - {p}" for p in self.problems)
                + "\nfix manifest.json and upload it again"
            )
        return Manifest(name, version, file, sha256, features, output, positive_class, description)

    def _name(self, value: object, what: str) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            self.problems.append(
                f"{what} must be an identifier (letters, digits, _; not starting with a "
                f"digit; at most 64 characters), got {value!r}"
            )
            return ""
        return value

    def _version(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problems.append(f"version must be an integer >= 1, got {value!r}")
            return 0
        return value

    def _file(self, value: object) -> str:
        # ASCII letters, digits, `.`, `_`, `-` only: no path separators, no NUL or other
        # control characters, no bidirectional overrides that make a name read as
        # another one (issue 14)
        if (
            not isinstance(value, str)
            or not _FILE.fullmatch(value)
            or value == "manifest.json"
        ):
            self.problems.append(
                "file must be a plain file name in the model's directory (ASCII letters, "
                "digits, '.', '_' and '-'; not starting with '.'; not manifest.json), got "
                f"{value!r}"
            )
            return ""
        return value

    def _sha256(self, value: object) -> str:
        if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
            self.problems.append(
                "sha256 must be the 64 hex digits of the model file's SHA-256 "
                f"(run `sha256sum FILE`), got {value!r}"
            )
            return ""
        return value.lower()

    def _features(self, value: object) -> tuple[Feature, ...]:
        if not isinstance(value, list) or not value:
            self.problems.append(
                "features must be a non-empty list of objects like "
                '{"name": "amount", "type": "float"}, in the order the model was '
                "fitted on"
            )
            return ()
        features: list[Feature] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            feature = self._feature(i, item)
            if feature is None:
                continue
            if feature.name in seen:
                self.problems.append(f"features[{i}]: duplicate feature name {feature.name!r}")
            seen.add(feature.name)
            features.append(feature)
        return tuple(features)

    def _feature(self, i: int, item: object) -> Feature | None:
        where = f"features[{i}]"
        if not isinstance(item, Mapping):
            self.problems.append(f"{where} must be an object with name and type, got {item!r}")
            return None
        before = len(self.problems)
        unknown = sorted(str(k) for k in item if k not in _FEATURE_KEYS)
        if unknown:
            self.problems.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys are "
                + ", ".join(_FEATURE_KEYS)
            )
        name = self._name(item.get("name"), f"{where}.name")
        ftype = item.get("type")
        if ftype not in FEATURE_TYPES:
            self.problems.append(
                f"{where}.type must be one of {', '.join(FEATURE_TYPES)}, got {ftype!r}"
            )
        default = item.get("default", 0.0)
        if (
            isinstance(default, bool)
            or not isinstance(default, (int, float))
            or not math.isfinite(default)
        ):
            self.problems.append(f"{where}.default must be a finite number, got {default!r}")
            default = 0.0
        if len(self.problems) > before:
            return None
        return Feature(name, cast(FeatureType, ftype), float(default))

    def _output(self, value: object) -> Output:
        if value not in OUTPUTS:
            self.problems.append(f"output must be one of {', '.join(OUTPUTS)}, got {value!r}")
            return "proba"
        return value

    def _positive_class(self, value: object, output: Output) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.problems.append(
                f"positive_class must be an integer or a string class label, got {value!r}"
            )
            return None
        if output == "anomaly":
            self.problems.append(
                "positive_class only applies to output proba or decision; remove it "
                "for output anomaly"
            )
            return None
        return value

    def _description(self, value: object) -> str | None:
        if value is not None and not isinstance(value, str):
            self.problems.append(f"description must be a string, got {value!r}")
            return None
        return value
