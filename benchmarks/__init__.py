"""defect-edge benchmarks: latency, throughput, memory and accuracy of the runtime on the machine it runs on.

Runs with the base install (onnxruntime, numpy, OpenCV). When torch is importable it also times the origin
notebook's network and ours in PyTorch eager in the same run, so speed-ups are ratios measured side by side.
"""

import edge_runtime  # noqa: E402, F401 - first: the stop signals are taken over before any other import (stopping)
