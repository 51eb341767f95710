"""Make the demo video: the bundled sample images as a short clip, for ``make demo``.

>>> python -m edge_runtime.demo runs/demo/samples.avi      # doctest: +SKIP
runs/demo/samples.avi: 17 images x 3 frames at 6 fps
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import cv2

from edge_runtime.errors import OutputError, UsageError
from edge_runtime.opencv_paths import video_frame_count
from edge_runtime.preprocess import IMAGE_SUFFIXES

SAMPLES = Path(__file__).resolve().parent / "samples"


def make_sample_video(out: Path, *, frames_per_image: int = 3, fps: float = 6.0, size: int = 300) -> int:
    """Write every sample image ``frames_per_image`` times as a Motion-JPEG .avi; returns the frame count. The
    video is written beside ``out`` and put in place only once complete: a failed write (a full disk, a file-size
    limit) leaves ``out`` as it was, never a short video that the station demo would then play."""
    images = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # OpenCV picks the container by suffix
    n = 0
    try:
        # MJPG in .avi is written by every opencv-python build (no system codec needed).
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
        if not writer.isOpened():
            raise OutputError(f"{out}: cannot write a video there; choose another path")
        for p in images:
            frame = cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
            for _ in range(frames_per_image):
                writer.write(frame)
                n += 1
        writer.release()
        if video_frame_count(tmp) < n:  # OpenCV's writer reports no failed write: read the count back
            raise OutputError(f"{out}: the video could not be written whole (a full disk or a file-size limit?)")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    print(f"{out}: {len(images)} images x {frames_per_image} frames at {fps:g} fps", file=sys.stderr)
    return n


def main() -> None:
    """``python -m edge_runtime.demo [OUT.avi]``: a click command, so that ``--help`` is help, not a file name."""
    import click

    from edge_runtime.cli_support import Command, debug_option, friendly_errors

    @click.command(cls=Command, help="Write the bundled sample images as a short Motion-JPEG video, for make demo.")
    @click.argument("out", type=click.Path(path_type=Path, dir_okay=False), default="runs/demo/samples.avi")
    @debug_option
    @friendly_errors
    def command(out: Path, debug: bool) -> None:
        if not debug:  # OpenCV's own warnings of a failed write; the error is one line of ours
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        if out.suffix.lower() != ".avi":
            raise UsageError(f"{out}: the demo video is a Motion-JPEG .avi; name an .avi file")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out}: cannot make its folder ({exc.strerror or exc}); choose another path") from exc
        make_sample_video(out)

    command()


if __name__ == "__main__":
    main()
