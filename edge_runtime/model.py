"""Load a defect-edge ONNX file and turn images into verdicts with onnxruntime (no torch).

>>> model = load_model()                      # the bundled INT8 model  # doctest: +SKIP
>>> model.predict(read_image("part.jpg"))     # doctest: +SKIP
Prediction(label='defective', score=0.998, defective=True, latency_ms=0.41)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from edge_runtime.errors import ModelError
from edge_runtime.model_info import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelInfo, Precision
from edge_runtime.preprocess import normalize, preprocess, resize_to_input, to_uint8_gray

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_FILES = {Precision.INT8: "defectnet_int8.onnx", Precision.FP32: "defectnet_fp32.onnx"}


class Provider(str, Enum):
    AUTO = "auto"  # the best available: TensorRT, then CUDA, then CPU
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


ORT_PROVIDER = {
    Provider.CPU: "CPUExecutionProvider",
    Provider.CUDA: "CUDAExecutionProvider",
    Provider.TENSORRT: "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run a model: which execution provider and how many CPU threads (None: onnxruntime decides)."""

    provider: Provider = Provider.AUTO
    threads: int | None = None


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # P(defective)
    defective: bool
    latency_ms: float  # preprocessing + inference for this item (a batch's time is shared out)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "score": round(self.score, 6),
            "defective": self.defective,
            "latency_ms": round(self.latency_ms, 3),
        }


def default_model_path(precision: Precision = Precision.INT8) -> Path:
    """Path of a model shipped inside the package."""
    return MODELS_DIR / DEFAULT_MODEL_FILES[precision]


def provider_chain(provider: Provider) -> list[str]:
    """The onnxruntime providers to ask for, best first; CPU is always last so a session can be made."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider is Provider.AUTO:
        wanted = [p for p in (ORT_PROVIDER[Provider.TENSORRT], ORT_PROVIDER[Provider.CUDA]) if p in available]
    elif provider is Provider.CPU:
        wanted = []
    else:
        wanted = [ORT_PROVIDER[provider]]
        if ORT_PROVIDER[provider] not in available:
            raise ModelError(
                f"provider {provider.value} is not available in this onnxruntime (has: {', '.join(available)}); "
                "install onnxruntime-gpu (see README, GPU) or use --provider cpu"
            )
    return [*wanted, ORT_PROVIDER[Provider.CPU]]


def read_model_info(model_proto_metadata: dict[str, str], path: Path) -> ModelInfo:
    text = model_proto_metadata.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{path}: has no defect-edge metadata; export it with export-onnx")
    try:
        return ModelInfo.from_json(text)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


class EdgeModel:
    """An onnxruntime session plus everything the ONNX file says about itself."""

    def __init__(self, path: str | Path, cfg: RuntimeConfig | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.cfg = cfg or RuntimeConfig()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; pass --model PATH to an .onnx from export-onnx")
        opts = ort.SessionOptions()
        if self.cfg.threads:
            opts.intra_op_num_threads = self.cfg.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        requested = provider_chain(self.cfg.provider)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=requested)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types for a bad file
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({first}); re-export with export-onnx") from exc
        self.info = read_model_info(self.session.get_modelmeta().custom_metadata_map, self.path)
        self._check_io()
        self.providers: list[str] = self.session.get_providers()
        self.fell_back = requested[0] != "CPUExecutionProvider" and self.providers[0] == "CPUExecutionProvider"

    def _check_io(self) -> None:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in ins] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outs]:
            raise ModelError(
                f"{self.path}: inputs {[i.name for i in ins]} / outputs {[o.name for o in outs]} are not a "
                f"defect-edge model's ({INPUT_NAME} -> {OUTPUT_NAME}); export it with export-onnx"
            )
        shape = ins[0].shape
        spec = self.info.preprocess
        if len(shape) != 4 or shape[1] != spec.channels or shape[2] != spec.size or shape[3] != spec.size:
            raise ModelError(f"{self.path}: input shape {shape} disagrees with its preprocessing spec; re-export it")

    def warn_if_fell_back(self, stream=sys.stderr) -> None:  # noqa: ANN001
        if self.fell_back:
            print(
                f"WARNING: asked for {self.cfg.provider.value} but onnxruntime runs {self.path.name} on "
                f"{', '.join(self.providers)}: GPU not used",
                file=stream,
            )

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """P(defective) for an already preprocessed float32 (N, C, H, W) batch."""
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded images (any channels/depth, any size) -> the float32 batch this model expects."""
        return preprocess(images, self.info.preprocess)

    def input_u8(self, image: np.ndarray, *, source: str = "image") -> np.ndarray:
        """One decoded image -> its resized 8-bit model input (size x size); cheap to do on worker threads.

        >>> x = model.input_u8(frame)               # doctest: +SKIP
        >>> model.predict_inputs(np.stack([x]))     # doctest: +SKIP
        """
        return resize_to_input(to_uint8_gray(image, source=source), self.info.preprocess)

    def predict_inputs(self, batch_u8: np.ndarray, *, prep_ms: Sequence[float] | None = None) -> list[Prediction]:
        """Verdicts for a stack of :meth:`input_u8` results (N, size, size).

        Each item's ``latency_ms`` is its own ``prep_ms`` (resizing, done elsewhere) plus an equal share of the
        batch's normalisation and inference time.
        """
        if len(batch_u8) == 0:
            return []
        t0 = time.perf_counter()
        s = self.scores(normalize(np.asarray(batch_u8), self.info.preprocess))
        share = (time.perf_counter() - t0) * 1000.0 / len(batch_u8)
        extra = prep_ms if prep_ms is not None else [0.0] * len(batch_u8)
        return [self.verdict(v, share + float(e)) for v, e in zip(s, extra, strict=True)]

    def describe(self) -> str:
        """One line for logs: file, precision, threshold, providers, threads."""
        threads = self.cfg.threads or "auto"
        return (
            f"model {self.path.name} ({self.info.precision.value}, {self.info.arch or 'unknown arch'}, "
            f"threshold {self.info.threshold:.4g}) on {', '.join(self.providers)}, threads {threads}"
        )

    def verdict(self, score: float, latency_ms: float) -> Prediction:
        defective = bool(score >= self.info.threshold)
        label = self.info.positive_class if defective else self.info.negative_class
        return Prediction(label=label, score=float(score), defective=defective, latency_ms=latency_ms)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Verdicts for decoded images; each gets an equal share of the batch's latency."""
        if not images:
            return []
        t0 = time.perf_counter()
        s = self.scores(self.prepare(images))
        per_item = (time.perf_counter() - t0) * 1000.0 / len(images)
        return [self.verdict(v, per_item) for v in s]

    def predict(self, image: np.ndarray) -> Prediction:
        """Verdict for one decoded image (gray or BGR, 8 or 16 bit)."""
        return self.predict_batch([image])[0]


def load_model(
    path: str | Path | None = None, *, provider: Provider | str = Provider.AUTO, threads: int | None = None
) -> EdgeModel:
    """Load a model file (default: the bundled INT8 model) on the given provider.

    ``threads`` defaults to the ``DEFECT_EDGE_THREADS`` environment variable, else onnxruntime's choice.
    """
    if threads is None and os.environ.get("DEFECT_EDGE_THREADS"):
        threads = int(os.environ["DEFECT_EDGE_THREADS"])
    return EdgeModel(path or default_model_path(), RuntimeConfig(provider=Provider(provider), threads=threads))
