"""defect-edge runtime: onnxruntime + numpy + OpenCV, never torch."""

import os

# OpenCV's own cap on decoded pixels (read once, when cv2 loads): the formats whose header edge_runtime.decoding
# does not parse itself stay bounded at 67 MP too, instead of OpenCV's default of 1 GP.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 26))
# onnxruntime 1.32's Linux telemetry (read when it loads): off unless the user sets ORT_DISABLE_TELEMETRY=0. On, it
# wrote a device id and an upload cache under ~/.cache/Microsoft, queued uploads from a line's offline device, and
# where $HOME cannot be written (a service account) printed a coloured warning at every start.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# edge-infer: a stop signal during the imports below ends the run cleanly (standard library only; a no-op when
# edge_runtime is imported as a library).
from edge_runtime.stopping import install_early  # noqa: E402

install_early()

from edge_runtime.address_space import fit_address_space  # noqa: E402

fit_address_space()  # before OpenCV, numpy and onnxruntime load and start their threads

from edge_runtime.errors import DefectEdgeError, ExitCode, ImageWarning, ThreadsWarning  # noqa: E402 - after OpenCV
from edge_runtime.model_info import ModelInfo, Precision  # noqa: E402
from edge_runtime.preprocess import PreprocessSpec, decode_image, preprocess, read_image  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DefectEdgeError",
    "EdgeModel",
    "ExitCode",
    "ImageWarning",
    "ModelInfo",
    "Precision",
    "Prediction",
    "PreprocessSpec",
    "ThreadsWarning",
    "__version__",
    "decode_image",
    "load_model",
    "preprocess",
    "read_image",
]

_FROM_MODEL = ("EdgeModel", "Prediction", "load_model")


def __getattr__(name: str) -> object:
    """``from edge_runtime import load_model`` (it was an ImportError: only ``edge_runtime.model`` had it), imported
    on first use: importing the package alone, as every command does first, does not load onnxruntime."""
    if name in _FROM_MODEL:
        from edge_runtime import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
