"""``edge-infer --camera 0`` on a synthetic 200 FPS camera, for tests that need a real process (signals, pipes).

python -m tests.edge_runtime.live_cli --model M.onnx --output out.jsonl --quiet
"""

from __future__ import annotations

import sys
import time

import numpy as np


class SyntheticCamera:
    """Endless 48x48 gray frames at about 200 FPS."""

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(0.005)
        self.n += 1
        return True, np.full((48, 48), (self.n * 7) % 256, np.uint8)

    def release(self) -> None:
        pass


def main() -> None:
    import edge_runtime.inputs as inputs
    from edge_runtime.cli import main as edge_infer

    inputs.capture_factory = lambda name, **kw: SyntheticCamera
    edge_infer(["--camera", "0", *sys.argv[1:]])


if __name__ == "__main__":
    main()
