"""Make the demo video: the bundled sample images as a short clip, for ``make demo``.

>>> python -m edge_runtime.demo runs/demo/samples.avi      # doctest: +SKIP
runs/demo/samples.avi: 17 images x 3 frames at 6 fps
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from edge_runtime.preprocess import IMAGE_SUFFIXES

SAMPLES = Path(__file__).resolve().parent / "samples"


def make_sample_video(out: Path, *, frames_per_image: int = 3, fps: float = 6.0, size: int = 300) -> int:
    """Write every sample image ``frames_per_image`` times as a Motion-JPEG .avi; returns the frame count."""
    images = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    out.parent.mkdir(parents=True, exist_ok=True)
    # MJPG in .avi is written by every opencv-python build (no system codec needed).
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise SystemExit(f"error: {out}: cannot write a video there")
    n = 0
    for p in images:
        frame = cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
        for _ in range(frames_per_image):
            writer.write(frame)
            n += 1
    writer.release()
    print(f"{out}: {len(images)} images x {frames_per_image} frames at {fps:g} fps", file=sys.stderr)
    return n


if __name__ == "__main__":
    make_sample_video(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/samples.avi"))
