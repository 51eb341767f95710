"""The export stage's one config object, built by the CLI and passed explicitly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edge_runtime.model_info import Precision

MIN_OPSET = 17
DEFAULT_OPSET = 17
MIN_CALIB_IMAGES = 10  # fewer is an error: the activation ranges would be guesses
FEW_CALIB_IMAGES = 100  # fewer gives a warning
PARITY_TOLERANCE = 1e-4  # max |P_torch - P_onnx| for FP32, on real images
MIN_PARITY_IMAGES = 64


class Int8Scheme(str, Enum):
    """Activation/weight integer types of the static QDQ model (see export/QUANTIZATION.md for the measurements).

    U8S8 is onnxruntime's default; on x86 without VNNI its u8 x s8 multiply can saturate, which
    ``reduce_range`` (7-bit weights) avoids; S8S8 uses signed activations.
    """

    U8S8 = "u8s8"
    U8S8_REDUCE_RANGE = "u8s8-reduce-range"
    S8S8 = "s8s8"


# Measured on defectnet only (export/QUANTIZATION.md): its two first convolutions are 16% of its multiply-adds. The
# origin network's are 61% of its (three colour channels, 224 px): kept in float, its "INT8" would mostly run in float.
DEFAULT_FLOAT_CONVS = {"defectnet": 2}


@dataclass(frozen=True)
class ExportConfig:
    """How to export: target precision, calibration and evaluation data, the accuracy gate.

    ``calib_data`` / ``eval_data`` of None mean: the images recorded in the checkpoint (train split for
    calibration, the test split beside it for evaluation), when they are reachable.

    >>> ExportConfig(precision=Precision.INT8, max_drop_pp=0.3).calib_count
    300
    """

    precision: Precision = Precision.FP32
    calib_data: Path | None = None
    calib_count: int = 300
    eval_data: Path | None = None
    max_drop_pp: float = 0.3
    opset: int = DEFAULT_OPSET
    force: bool = False
    scheme: Int8Scheme = Int8Scheme.U8S8_REDUCE_RANGE  # measured choice, see export/QUANTIZATION.md
    # INT8: the verdict network's first convolutions kept in float; None: the architecture's default
    # (DEFAULT_FLOAT_CONVS). For defectnet two cut INT8's error against FP32 by 3x at no measured cost in speed
    # (their 7-bit weights on the one-channel image were most of the error; QUANTIZATION.md).
    float_convs: int | None = None

    def __post_init__(self) -> None:
        # The Python API takes the enums' strings and plain str paths too: compared by identity further on,
        # precision="int8" was converted to FP16 and crashed after the whole export ("'str' object has no
        # attribute 'value'"), and precision="fp32" was gated as a quantized model.
        object.__setattr__(self, "precision", Precision(self.precision))
        object.__setattr__(self, "scheme", Int8Scheme(self.scheme))
        for name in ("calib_data", "eval_data"):
            value = getattr(self, name)
            if value is not None:
                if not str(value):  # Path("") is the current folder
                    raise ValueError(f"{name} is empty; pass a folder or None")
                object.__setattr__(self, name, Path(value))
        # The CLI's own limits, for the API: calib_count=3 said "only 3 readable calibration images" of a folder
        # of hundreds, opset=9 printed torch's whole graph before its error, and a NaN max_drop_pp failed every gate.
        if self.float_convs is not None and self.float_convs < 0:
            raise ValueError(f"float_convs must be 0 or more, not {self.float_convs}")
        if self.calib_count < MIN_CALIB_IMAGES:
            raise ValueError(f"calib_count must be at least {MIN_CALIB_IMAGES}, not {self.calib_count}")
        if not (math.isfinite(self.max_drop_pp) and self.max_drop_pp >= 0):
            raise ValueError(f"max_drop_pp must be a finite number of percentage points >= 0, not {self.max_drop_pp}")
        if self.opset < MIN_OPSET:
            raise ValueError(f"opset must be {MIN_OPSET} or more, not {self.opset}")
        if self.latency_runs < 1:
            raise ValueError(f"latency_runs must be 1 or more, not {self.latency_runs}")

    def float_convs_for(self, arch: str) -> int:
        """The convolutions an INT8 export of ``arch`` keeps in float.

        >>> ExportConfig().float_convs_for("defectnet"), ExportConfig().float_convs_for("seed")
        (2, 0)
        """
        return self.float_convs if self.float_convs is not None else DEFAULT_FLOAT_CONVS.get(arch, 0)

    seed: int = 0
    latency_runs: int = 200
    threads: int | None = 1  # for the latency column; None lets onnxruntime choose
    with_map: bool | None = None  # the localisation map output; None: when the architecture has a GAP head
    # Part-centred models: the runtime's symmetry look below the threshold (edge_runtime.model_info.SymmetryLook)
    symmetry_look: bool = True

    @property
    def quantized(self) -> bool:
        return self.precision is not Precision.FP32
