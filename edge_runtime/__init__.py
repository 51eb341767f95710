"""defect-edge runtime: onnxruntime + numpy + OpenCV, never torch."""

from edge_runtime.errors import DefectEdgeError, ExitCode
from edge_runtime.model_info import ModelInfo, Precision
from edge_runtime.preprocess import PreprocessSpec, preprocess, read_image

__version__ = "0.1.0"

__all__ = [
    "DefectEdgeError",
    "ExitCode",
    "ModelInfo",
    "Precision",
    "PreprocessSpec",
    "__version__",
    "preprocess",
    "read_image",
]
