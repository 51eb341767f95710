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
from pathlib import Path
from typing import Any

from edge_runtime.errors import ModelError
from edge_runtime.preprocess import CropMode, PreprocessSpec

METADATA_KEY = "defect_edge"
SCHEMA_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "p_defective"
MAP_OUTPUT_NAME = "defect_map"  # optional second output: the class-activation map (N, 1, h, w)
# The graph outputs a model may declare in its metadata (``outputs``), in graph order.
VALID_OUTPUTS = ((OUTPUT_NAME,), (OUTPUT_NAME, MAP_OUTPUT_NAME))
MAX_METADATA_CHARS = 1_000_000  # a real entry is a few kB; anything far larger is corrupt
# Class-folder names the tools understand without --positive-class (the public casting dataset's, and plain
# ones), mapped to the class names the models report.
KNOWN_CLASS_FOLDERS = {"def_front": "defective", "ok_front": "ok", "defective": "defective", "ok": "ok"}


class View(str, Enum):
    MIRROR = "mirror"  # the input mirrored left-right


@dataclass(frozen=True)
class SecondLook:
    """A second view of the items whose first score lies near the threshold, averaged with the first.

    The score becomes the mean of the two views' logits wherever the first view's logit lies within
    ``band_logit`` of the threshold's; farther out one view decides alone. The threshold was chosen on validation
    with both views. Of 22,445 items scored both ways (the default model's validation images and its test images
    under 30 camera and station conditions, FP32 and INT8), every verdict the second view changed had a first logit
    within 2.2 of the threshold's (defects it caught: within 1.2). A band of 3 therefore gives the verdicts of
    scoring every item twice, at the cost of a second inference for the items near the threshold only.

    >>> SecondLook.from_dict({"view": "mirror", "band_logit": 3.0}).band_logit
    3.0
    """

    view: View = View.MIRROR
    band_logit: float = 3.0

    def __post_init__(self) -> None:
        b = self.band_logit
        if not (_is_number(b) and math.isfinite(b) and 0.0 < b <= 50.0):
            raise ModelError(f"model metadata second_look band_logit {str(b)[:40]} is not a number in (0, 50]")

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view.value, "band_logit": self.band_logit}

    @classmethod
    def from_dict(cls, d: Any) -> SecondLook:
        if not isinstance(d, dict):
            raise ModelError("model metadata second_look is not a JSON object; re-export the model")
        if d.get("view") is None:  # not a view from a newer defect-edge: upgrading would not help
            raise ModelError("model metadata second_look has no view; re-export the model")
        try:
            view = View(d.get("view"))
        except ValueError:
            raise ModelError(
                f"model metadata second_look view {str(d.get('view'))[:40]!r} is not known to this defect-edge "
                f"(knows {[v.value for v in View]}); upgrade defect-edge or re-export the model"
            ) from None
        return cls(view=view, band_logit=d.get("band_logit"))


@dataclass(frozen=True)
class SymmetryLook:
    """The part's own symmetry as a second opinion on the items just below the threshold (part-centred models).

    A network input of 160 px blurs a 5-10 px pinhole of a 512 px camera frame into 2-3 px; the part's rotational
    asymmetry (:mod:`edge_runtime.symmetry`) measures it at the source's resolution. An item whose logit lies
    within ``band_logit`` below the threshold's has it raised by ``weight * ln(peak / from_peak)`` where its
    asymmetry peak exceeds ``from_peak``; nothing is ever lowered, and items outside the band are not measured.
    Chosen on the validation images under the station conditions (missed defects 10 -> 3, false alarms 107 ->
    110, FP32); the threshold is the one chosen without it.

    >>> look = SymmetryLook.from_dict({"band_logit": 1.5, "from_peak": 8.0, "weight": 2.0})
    >>> round(look.lift(16.0), 3), look.lift(5.0)
    (1.386, 0.0)
    """

    band_logit: float = 1.5
    from_peak: float = 8.0
    weight: float = 2.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("band_logit", 0.0, 50.0), ("from_peak", 0.0, 1000.0), ("weight", 0.0, 100.0)):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and lo < v <= hi):
                raise ModelError(
                    f"model metadata symmetry_look {name} {str(v)[:40]} is not a number in ({lo:g}, {hi:g}]"
                )

    def lift(self, peak: float) -> float:
        """How much the logit of an item in the band rises for its asymmetry ``peak`` (0 at or below from_peak)."""
        return self.weight * math.log(peak / self.from_peak) if peak > self.from_peak else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"band_logit": self.band_logit, "from_peak": self.from_peak, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Any) -> SymmetryLook:
        if not isinstance(d, dict):
            raise ModelError("model metadata symmetry_look is not a JSON object; re-export the model")
        return cls(**{k: d.get(k) for k in ("band_logit", "from_peak", "weight")})


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
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    # The training images' input statistics (edge_runtime.station_check.StationProfile.to_dict()); empty: none.
    station: dict[str, Any] = field(default_factory=dict)
    # The map value drawn at full heat (edge_runtime.heatmap.heat); None: the Grad-CAM maps' scale.
    map_full_scale: float | None = None
    # Score the items near the threshold a second time, mirrored (the threshold was chosen that way); None: one view.
    second_look: SecondLook | None = None
    # Part-centred models: the part's symmetry lifts the items just below the threshold; None: not used.
    symmetry_look: SymmetryLook | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if tuple(self.outputs) not in VALID_OUTPUTS:
            raise ModelError(
                f"model metadata declares outputs {list(self.outputs)}; expected {list(VALID_OUTPUTS[0])} or "
                f"{list(VALID_OUTPUTS[1])}"
            )
        if len(self.class_names) != 2 or self.class_names[0] == self.class_names[1]:
            raise ModelError(f"model metadata has class names {list(self.class_names)}; expected two distinct names")
        if self.positive_class != self.class_names[1]:
            raise ModelError(
                f"model metadata names positive class {self.positive_class!r} but class_names[1] is "
                f"{self.class_names[1]!r}; re-export the model"
            )
        if not (isinstance(self.threshold, float) and math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ModelError(f"model metadata threshold {self.threshold!r} is not a probability in [0, 1]")
        scale = self.map_full_scale
        if scale is not None and not (_is_number(scale) and math.isfinite(scale) and 0.0 < scale < 1e6):
            raise ModelError(f"model metadata map_full_scale {str(scale)[:40]} is not a positive number")
        if self.symmetry_look is not None and self.preprocess.crop is not CropMode.PART:
            raise ModelError(
                f"model metadata asks for a symmetry_look but crops {self.preprocess.crop.value!r}, not 'part' "
                "(the look needs the part's centre); re-export the model"
            )

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
            "outputs": list(self.outputs),
            **({"station": self.station} if self.station else {}),
            **({"map_full_scale": self.map_full_scale} if self.map_full_scale is not None else {}),
            **({"second_look": self.second_look.to_dict()} if self.second_look is not None else {}),
            **({"symmetry_look": self.symmetry_look.to_dict()} if self.symmetry_look is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Parse and validate the metadata entry; anything malformed is a :class:`ModelError` (exit 4)."""
        if len(text) > MAX_METADATA_CHARS:
            raise ModelError(f"model metadata is {len(text)} characters long; it is corrupt, re-export the model")
        try:
            d = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, NaN, deep nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
            raise ModelError(f"model metadata is not valid JSON ({reason}); re-export the model") from exc
        if not isinstance(d, dict):
            raise ModelError("model metadata is not a JSON object; re-export the model")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise ModelError(
                f"model metadata schema {version!r} is not supported (expects {SCHEMA_VERSION}); "
                "upgrade defect-edge or re-export the model"
            )
        try:
            return cls(
                preprocess=_preprocess(d.get("preprocess")),
                class_names=_class_names(d.get("class_names")),
                threshold=_probability(d.get("threshold")),
                positive_class=_text(d, "positive_class", required=True),
                precision=Precision(_text(d, "precision") or "fp32"),
                arch=_text(d, "arch"),
                model_version=_text(d, "model_version"),
                data_fingerprint=_text(d, "data_fingerprint"),
                metrics=_mapping(d, "metrics"),
                producer={str(k): str(v) for k, v in _mapping(d, "producer").items()},
                outputs=_outputs(d.get("outputs", [OUTPUT_NAME])),
                station=_station(d.get("station")),
                map_full_scale=d.get("map_full_scale"),
                second_look=None if d.get("second_look") is None else SecondLook.from_dict(d["second_look"]),
                symmetry_look=None if d.get("symmetry_look") is None else SymmetryLook.from_dict(d["symmetry_look"]),
                schema_version=SCHEMA_VERSION,
            )
        except ModelError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise ModelError(f"model metadata is incomplete or invalid ({exc!r}); re-export the model") from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _probability(v: Any) -> float:
    """The threshold: a JSON number (not ``true``, not ``"0.5"``), finite, in [0, 1]."""
    if not _is_number(v):
        raise ModelError(f"model metadata threshold {v!r} is not a number; re-export the model")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not (math.isfinite(f) and 0.0 <= f <= 1.0):
        raise ModelError(f"model metadata threshold {str(v)[:40]} is not a probability in [0, 1]")
    return f


def _class_names(v: Any) -> tuple[str, str]:
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(n, str) and n.strip() for n in v)):
        raise ModelError(f"model metadata class_names {str(v)[:80]} is not a list of exactly two names")
    return (v[0], v[1])


def _text(d: dict, key: str, *, required: bool = False) -> str:
    v = d.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise ModelError(f"model metadata {key} {str(v)[:40]} is not a string; re-export the model")
    return v


def _mapping(d: dict, key: str) -> dict[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, dict):
        raise ModelError(f"model metadata {key} is not a JSON object; re-export the model")
    return v


def _outputs(v: Any) -> tuple[str, ...]:
    if not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
        raise ModelError(f"model metadata outputs {str(v)[:80]} is not a list of output names")
    return tuple(v)


def _preprocess(v: Any) -> PreprocessSpec:
    """The preprocessing spec: a JSON object whose numbers are finite, with ``scale`` and ``std`` positive."""
    if not isinstance(v, dict):
        raise ModelError(f"model metadata preprocess is {type(v).__name__}, not a JSON object; re-export the model")
    for key, value in v.items():
        if isinstance(value, bool) or not _is_number(value):
            continue
        try:
            f = float(value)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise ModelError(f"model metadata preprocess {key} is not a finite number; re-export the model")
    for key in ("scale", "std"):
        value = v.get(key)
        if not _is_number(value) or not float(value) > 0:
            raise ModelError(f"model metadata preprocess {key} {str(value)[:40]} must be a positive number")
    for key in ("size", "channels"):
        if not isinstance(v.get(key), int) or isinstance(v.get(key), bool):
            raise ModelError(f"model metadata preprocess {key} {str(v.get(key))[:40]} must be an integer")
    try:
        return PreprocessSpec.from_dict(v)
    except ModelError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ModelError(f"model metadata preprocess is invalid ({exc!r}); re-export the model") from exc


def _station(value: Any) -> dict[str, Any]:
    """The optional station profile: absent is fine, malformed is an error (exit 4) like any metadata."""
    if value is None:
        return {}
    from edge_runtime.station_check import StationProfile  # noqa: PLC0415 - keeps the metadata module light

    try:
        return StationProfile.from_dict(value).to_dict()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ModelError(f"model metadata station profile is invalid ({exc}); re-export the model") from exc


def read_model_info(model_proto_metadata: dict[str, str], path: Path) -> ModelInfo:
    """The defect-edge entry of an ONNX file's metadata, validated; a ModelError naming ``path`` otherwise."""
    text = model_proto_metadata.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{path}: has no defect-edge metadata; export it with export-onnx")
    try:
        return ModelInfo.from_json(text)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc
