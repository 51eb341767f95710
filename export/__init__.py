"""torch checkpoint -> self-describing ONNX (FP32, INT8 QDQ, FP16), checked against torch and labelled images.

Needs the ``train`` extra (torch, onnx). ``export_onnx(checkpoint, out, cfg)`` is the one entry point;
``export-onnx`` is its command line.
"""

import edge_runtime  # noqa: E402, F401 - first: the stop signals are taken over before any other import (stopping)
from edge_runtime.errors import exit_if_missing  # noqa: E402

exit_if_missing(("torch", "onnx"))  # python -m export.ship without the extra: one line, exit 8
