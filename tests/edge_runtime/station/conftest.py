"""Records and logs as ``edge-infer`` makes them, without running a model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.station.log import InspectionLog, LogConfig, RunInfo

RUN = RunInfo(
    source="parts/",
    model_version="ab12cd34ef56",
    model_file="/models/defectnet_int8.onnx",
    providers=["CPUExecutionProvider"],
    precision="int8",
    threshold=0.41,
)


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(i: int, *, defective: bool, t: float | None = None, error: str | None = None, **extra: object) -> dict:
    """A record with the keys edge-infer writes (``error`` set: an unreadable item)."""
    base = {"source": f"parts/p{i:05d}.png", "frame": None}
    if error:
        base |= {"label": None, "score": None, "defective": None, "latency_ms": None, "error": error}
    else:
        score = 0.9 + i % 10 / 100 if defective else 0.05
        base |= {
            "label": "defective" if defective else "ok",
            "score": score,
            "defective": defective,
            "latency_ms": 0.4 + i % 7 / 10,
            "error": None,
        }
    return base | {"warning": None, "time": stamp(t if t is not None else 1_780_000_000.0 + i)} | extra


def part_picture(level: int = 200, size: int = 96) -> np.ndarray:
    img = np.full((size, size), 60, np.uint8)
    img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = level
    return img


def write_items(log: InspectionLog, n: int, *, defective_every: int = 4, t0: float | None = None) -> list[dict]:
    """``n`` records (every ``defective_every``-th defective, with a picture) written in batches of 32, flushed."""
    recs = [record(i, defective=i % defective_every == 0, t=None if t0 is None else t0 + i) for i in range(n)]
    for k in range(0, n, 32):
        chunk = recs[k : k + 32]
        log.write(chunk, [part_picture() for _ in chunk])
    log.flush()  # the thumbnails made on the helper thread
    return recs


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "station.db"


@pytest.fixture
def station_log(log_path: Path):
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(RUN)
    yield log
    log.close()


@contextmanager
def running_view(**settings: object) -> Iterator[int]:
    """The web view's server in this process (as its own process runs it), with these ``ViewConfig`` settings;
    yields its port."""
    from edge_runtime.station.live import LiveState
    from edge_runtime.station.server import Bind, bind_socket
    from edge_runtime.station.view_process import ViewConfig, start_uvicorn

    live = LiveState(station="line-3")
    sock = bind_socket(Bind("127.0.0.1", 0))
    server, thread, closing = start_uvicorn(live, sock, ViewConfig(station="line-3", **settings))  # type: ignore[arg-type]
    try:
        yield sock.getsockname()[1]
    finally:
        closing.set()
        server.should_exit = True
        thread.join(5.0)
        live.stop()
