"""``make station-demo``: the bundled sample video played in a loop as a network camera, inspected live.

A small MJPEG camera (Starlette + uvicorn, on a background thread) serves the frames of the sample video at the
video's own frame rate, forever; ``edge-infer`` reads it like any IP camera with ``--log`` and ``--serve`` and
prints the URL of the station page. Ctrl-C stops both.

>>> python -m edge_runtime.station.demo --serve 127.0.0.1:8080 --log runs/station-demo/station.db   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import click
import cv2

from edge_runtime.cli_support import Command, debug_option, friendly_errors, once
from edge_runtime.errors import DataError, OutputError, require_extra

DEMO_VIDEO = Path("runs/demo/samples.avi")


def video_jpegs(video: Path) -> tuple[list[bytes], float]:
    """Every frame of ``video`` as a JPEG, and its frame rate."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 6.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    cap.release()
    if not frames:
        raise DataError(f"{video}: no frames; rebuild it with python -m edge_runtime.demo {video}")
    return frames, fps


def camera_app(frames: list[bytes], fps: float):  # noqa: ANN201 - a Starlette app
    """``/video.mjpg``: the frames in a loop at ``fps``, as an IP camera sends them."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def video(request):  # noqa: ANN001, ANN202
        async def parts():  # noqa: ANN202
            loop, k = asyncio.get_running_loop(), 0
            next_t = loop.time()
            while True:
                jpeg = frames[k % len(frames)]
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
                k += 1
                next_t += 1.0 / fps
                await asyncio.sleep(max(0.0, next_t - loop.time()))

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    return Starlette(routes=[Route("/video.mjpg", video)])


def _or_default(value: str | None, default: str) -> str:
    return default if value is None else value  # an empty --log '' is edge-infer's to refuse, not replaced


def _bind(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from edge_runtime.station.server import Bind

    try:  # checked before the demo camera starts (a ValueError traceback came after it)
        bind = Bind.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not bind.loopback:  # edge-infer asks for --token there, an option the demo does not have
        raise click.BadParameter(
            f"{value}: the demo serves this machine only (127.0.0.1:PORT); on a network, run edge-infer "
            "--serve HOST:PORT --token SECRET"
        )
    return value


@click.command(
    cls=Command, help="Play the sample video in a loop as a network camera and inspect it with --log and --serve."
)
@click.option(
    "--serve", default="127.0.0.1:8080", show_default=True, callback=_bind, help="Where the station page is served."
)
@click.option(
    "--log",
    "log",
    multiple=True,
    callback=lambda ctx, param, values: _or_default(once(param, values), "runs/station-demo/station.db"),
    help="Inspection log [default: runs/station-demo/station.db].",
)
@click.option(
    "--camera-port", type=click.IntRange(1, 65535), default=8091, show_default=True, help="Port of the demo camera."
)
@click.option(
    "--video",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"A Motion-JPEG video to play [default: {DEMO_VIDEO}, made from the samples when missing].",
)
@debug_option
@friendly_errors
def main(serve: str, log: str, camera_port: int, video: Path | None, debug: bool) -> None:
    if video is not None and not video.is_file():  # a named video was made from the samples, even at /
        raise DataError(f"{video}: no such video; leave --video out to play the sample video")
    from edge_runtime.station.server import Bind, bind_socket

    page = Bind.parse(serve)
    if page.port == camera_port:  # the camera took the port, then the page failed on it: "choose another --serve"
        raise click.BadOptionUsage(
            "camera_port", f"--camera-port {camera_port}: the station page is served there (--serve {serve})"
        )
    bind_socket(page).close()  # a taken page port fails now, not after the camera has started and its URL shown
    require_extra("starlette", "station")
    require_extra("uvicorn", "station")
    import uvicorn

    from edge_runtime.cli import main as edge_infer
    from edge_runtime.demo import make_sample_video

    video = video or DEMO_VIDEO
    if not video.is_file():
        if not debug:  # OpenCV's warnings of a failed write: the error is one line of ours
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        make_sample_video(video)
    frames, fps = video_jpegs(video)
    try:
        sock = bind_socket(Bind("127.0.0.1", camera_port))
    except OutputError as exc:  # the camera's port, not the page's: it said "choose another --serve"
        raise OutputError(str(exc).replace("another --serve", "another --camera-port")) from exc
    server = uvicorn.Server(uvicorn.Config(camera_app(frames, fps), log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    url = f"http://127.0.0.1:{camera_port}/video.mjpg"
    print(f"demo camera: {video} ({len(frames)} frames at {fps:g} fps, looped) at {url}", file=sys.stderr)
    print(f"station page: {page.url}  (Ctrl-C stops)", file=sys.stderr, flush=True)
    edge_infer.main(["--source", url, "--serve", serve, "--log", log, "--station", "demo", "--quiet"])


if __name__ == "__main__":
    main()
