"""What a defect-edge ONNX file says about itself: one versioned JSON entry in ``metadata_props``.

The exporter writes it, the runtime reads and validates it. It is parsed with ``json`` only, never evaluated.
The graph contract: input ``INPUT_NAME`` float32 (N, channels, size, size) as produced by
:func:`edge_runtime.preprocess.preprocess`; output ``OUTPUT_NAME`` float32 (N,), the probability that the
item belongs to ``positive_class`` (defective).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edge_runtime.errors import ModelError
from edge_runtime.preprocess import PreprocessSpec

METADATA_KEY = "defect_edge"
SCHEMA_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "p_defective"
# Class-folder names the tools understand without --positive-class (the public casting dataset's, and plain
# ones), mapped to the class names the models report.
KNOWN_CLASS_FOLDERS = {"def_front": "defective", "ok_front": "ok", "defective": "defective", "ok": "ok"}


class Precision(str, Enum):
    FP32 = "fp32"
    INT8 = "int8"
    FP16 = "fp16"


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs besides the graph: preprocessing, labels, threshold, provenance.

    ``class_names`` is ``(negative, positive)``; an item is ``positive_class`` when its score is at or above
    ``threshold``.

    >>> info = ModelInfo(preprocess=PreprocessSpec(), class_names=("ok", "defective"), threshold=0.5)
    >>> ModelInfo.from_json(info.to_json()).threshold
    0.5
    """

    preprocess: PreprocessSpec
    class_names: tuple[str, str]
    threshold: float
    positive_class: str = "defective"
    precision: Precision = Precision.FP32
    arch: str = ""
    model_version: str = ""
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if len(self.class_names) != 2 or self.class_names[0] == self.class_names[1]:
            raise ModelError(f"model metadata has class names {list(self.class_names)}; expected two distinct names")
        if self.positive_class != self.class_names[1]:
            raise ModelError(
                f"model metadata names positive class {self.positive_class!r} but class_names[1] is "
                f"{self.class_names[1]!r}; re-export the model"
            )
        if not (isinstance(self.threshold, float) and math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ModelError(f"model metadata threshold {self.threshold!r} is not a probability in [0, 1]")

    @property
    def negative_class(self) -> str:
        return self.class_names[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "preprocess": self.preprocess.to_dict(),
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "precision": self.precision.value,
            "arch": self.arch,
            "model_version": self.model_version,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "producer": self.producer,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model metadata is not valid JSON ({exc}); re-export the model") from exc
        if not isinstance(d, dict):
            raise ModelError("model metadata is not a JSON object; re-export the model")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ModelError(
                f"model metadata schema {version!r} is not supported (expects {SCHEMA_VERSION}); "
                "upgrade defect-edge or re-export the model"
            )
        try:
            names = d["class_names"]
            return cls(
                preprocess=PreprocessSpec.from_dict(d["preprocess"]),
                class_names=(str(names[0]), str(names[1])),
                threshold=float(d["threshold"]),
                positive_class=str(d["positive_class"]),
                precision=Precision(d.get("precision", "fp32")),
                arch=str(d.get("arch", "")),
                model_version=str(d.get("model_version", "")),
                data_fingerprint=str(d.get("data_fingerprint", "")),
                metrics=dict(d.get("metrics", {})),
                producer={str(k): str(v) for k, v in dict(d.get("producer", {})).items()},
                schema_version=int(version),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"model metadata is incomplete or invalid ({exc!r}); re-export the model") from exc
