"""The web view's routes (Starlette): the page, the MJPEG stream, JSON endpoints, thumbnails and /metrics.

| route | what |
| --- | --- |
| ``/`` and ``/static/*`` | the station page (assets bundled in the package, no CDN) |
| ``/stream.mjpg`` | the annotated frames, ``multipart/x-mixed-replace`` (any browser), at most ``--serve-fps`` |
| ``/frame.jpg`` | the newest annotated frame |
| ``/api/status`` | counters, latency, FPS, uptime, model, providers, source state, station-check flags |
| ``/api/inspections?since=8h&after_id=&defective=&limit=`` | records (from the log when there is one) |
| ``/api/defects?limit=24`` | the last defective items, newest first |
| ``/api/rate?hours=8`` | items, defective and defect rate per 10 minutes |
| ``/thumb/{id}.jpg`` | the stored thumbnail of one of this station's defective items, by record id |
| ``/metrics`` | Prometheus text format |
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge_runtime.errors import DefectEdgeError
from edge_runtime.station import query
from edge_runtime.station.answer_cache import AnswerCache
from edge_runtime.station.live import LiveState
from edge_runtime.station.log_parts import epoch
from edge_runtime.station.server import STATIC, TOKEN_COOKIE, sleep_until

MAX_LIMIT = 1000


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name} must be between {lo} and {hi}")
    return value


def _float(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(request.query_params.get(name, default))
    except ValueError:
        raise HTTPException(400, f"{name} must be a number") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name} must be between {lo:g} and {hi:g}")
    return value


def record_id(text: str) -> int:
    """A record id from a URL: digits, at most SQLite's largest integer; 404 otherwise (a 5000-digit id was a 500
    and a 40-line traceback on the station's stderr for each request: Python refuses to convert it).

    >>> record_id("1234")
    1234
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > 2**63 - 1:
        raise HTTPException(404, "no such item: thumbnails are /thumb/ID.jpg, with ID a record id")
    return int(text)


def _filter(request: Request) -> query.Filter:
    p = request.query_params
    since = None
    if p.get("since"):
        try:
            since = query.parse_when(p["since"])
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
    defective = p.get("defective")
    if defective not in (None, "", "true", "false", "1", "0"):
        raise HTTPException(400, "defective must be true or false")
    return query.Filter(
        since=since,
        defective=None if defective in (None, "") else defective in ("true", "1"),
        after_id=_int(request, "after_id", 0, 0, 2**62) or None,
    )


def metrics_text(status: dict[str, Any]) -> str:
    """Prometheus text exposition format (version 0.0.4)."""

    def esc(v: object) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    st = f'station="{esc(status["station"])}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, value: object, labels: str = st) -> None:
        lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}"])
        lines.append(f"{name}{{{labels}}} {'NaN' if value is None else value}")

    metric("defect_edge_items_total", "counter", "Items judged since start.", status["items"])
    metric("defect_edge_defective_total", "counter", "Items judged defective since start.", status["defective"])
    metric("defect_edge_errors_total", "counter", "Unreadable items since start.", status["errors"])
    metric(
        "defect_edge_station_check_flagged_total",
        "counter",
        "Items flagged by the station check.",
        status["station_check"]["flagged"],
    )
    metric("defect_edge_fps", "gauge", "Items per second over the last 2 s.", status["fps"])
    metric("defect_edge_uptime_seconds", "gauge", "Seconds since the station started.", status["uptime_s"])
    metric(
        "defect_edge_source_connected",
        "gauge",
        "1 while the source delivers, else 0.",
        int(status["source_state"] in ("connected", "running")),
    )
    lines.extend(
        [
            "# HELP defect_edge_latency_ms Latency per item over the last 1000 items.",
            "# TYPE defect_edge_latency_ms gauge",
        ]
    )
    for q, key in (("0.5", "latency_ms_p50"), ("0.99", "latency_ms_p99")):
        value = status[key]
        lines.append(f'defect_edge_latency_ms{{{st},quantile="{q}"}} {"NaN" if value is None else value}')
    if "model_version" in status:
        labels = (
            f'{st},model_version="{esc(status["model_version"])}",precision="{esc(status["precision"])}",'
            f'providers="{esc(",".join(status["providers"]))}"'
        )
        metric("defect_edge_model_info", "gauge", "The model in use (value is always 1).", 1, labels)
    return "\n".join(lines) + "\n"


class _Api:
    """The page's routes over ``live`` (and the log at ``log_path``, read-only, when there is one)."""

    def __init__(self, live: LiveState, log_path: Path | None, closing: threading.Event) -> None:
        self.live, self.log_path, self.closing = live, log_path, closing
        self.history = AnswerCache()

    def reader(self) -> Any:
        return query.open_reader(self.log_path) if self.log_path is not None else None

    def status(self, request: Request) -> JSONResponse:
        return JSONResponse(self.live.status() | {"log": None if self.log_path is None else str(self.log_path)})

    def mine(self, flt: query.Filter) -> query.Filter:
        """Only this station's rows: stations may share one --log, and a station's page showed another's defects,
        chart and records beside its own counters."""
        return dataclasses.replace(flt, station=self.live.station)

    def inspections(self, request: Request) -> Response:
        flt, limit = _filter(request), _int(request, "limit", 100, 1, MAX_LIMIT)
        if self.log_path is None:
            found = [r for r in self.live.recent_rows(flt.after_id or 0, MAX_LIMIT) if _matches(r, flt)][:limit]
            return JSONResponse({"items": found, "last_id": found[-1]["id"] if found else flt.after_id})

        def answer() -> bytes:
            con = self.reader()
            try:
                found = list(query.rows(con, self.mine(flt), limit=limit))
            finally:
                con.close()
            return JSONResponse({"items": found, "last_id": found[-1]["id"] if found else flt.after_id}).body

        # the same query within a second gets the same answer, made once (300 clients made it 300 times)
        return Response(self.history.get(request.url.query, answer), media_type="application/json")

    def defects(self, request: Request) -> JSONResponse:
        limit = _int(request, "limit", 24, 1, 200)
        con = self.reader()
        if con is None:
            return JSONResponse({"items": self.live.defects(limit)})
        left_out: list[str] = []
        flt = self.mine(query.Filter(defective=True))
        found = list(query.rows(con, flt, limit=limit, newest_first=True, damaged_out=left_out))
        con.close()
        self.live.gallery_asked()
        return JSONResponse({"items": found, "damaged": left_out})

    def rate(self, request: Request) -> JSONResponse:
        hours = _float(request, "hours", 8.0, 0.1, 24 * 31)
        bucket = 600 if hours <= 24 else 3600
        con = self.reader()
        if con is None:
            return JSONResponse({"bucket_s": bucket, "buckets": self.live.rate(hours, bucket)})
        found = query.rate_buckets(con, self.mine(query.Filter(since=query.parse_when(f"{hours}h"))), bucket)
        con.close()
        return JSONResponse({"bucket_s": bucket, "buckets": found})

    def thumb(self, request: Request) -> Response:
        item_id = record_id(request.path_params["item_id"])
        con = self.reader()
        try:
            if con is None:
                jpeg = self.live.gallery_thumbnail(item_id)
            else:
                jpeg = query.thumbnail_jpeg(con, item_id, station=self.live.station)
        finally:
            if con is not None:
                con.close()
        if not jpeg:
            raise HTTPException(404, f"no image for item {item_id}")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def frame(self, request: Request) -> Response:
        self.live.want_frames()
        if self.live.jpeg is None:
            raise HTTPException(404, "no frame yet")
        return Response(self.live.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def stream(self, request: Request) -> StreamingResponse:
        async def parts() -> Any:
            self.live.watchers += 1
            last = 0
            try:
                while not await sleep_until(self.closing, 0.5 / self.live.max_fps):
                    jpeg, seq = self.live.jpeg, self.live.jpeg_seq
                    if jpeg and seq != last:
                        last = seq
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        yield head.encode() + jpeg + b"\r\n"
            finally:
                self.live.watchers -= 1

        return _StreamToReaders(
            parts(),
            closing=self.closing,
            media_type="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    def metrics(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse(metrics_text(self.live.status()), media_type="text/plain; version=0.0.4")

    def index(self, request: Request) -> FileResponse:
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
        if "token" in request.query_params:  # already checked by the gate
            response.set_cookie(TOKEN_COOKIE, request.query_params["token"], httponly=True, samesite="strict")
        return response

    async def http_error(self, request: Request, exc: Exception) -> JSONResponse:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error (see the edge-infer log)"
        if isinstance(exc, DefectEdgeError):  # a damaged log record: said, without a traceback on the station
            detail = str(exc)
        return JSONResponse({"error": detail}, code)


STALLED_S = 10.0  # a stream client that takes no data this long is dropped


class _Stalled(Exception):
    pass


class _StreamToReaders(StreamingResponse):
    """The live stream, for clients that read it. One that stops reading (a laptop asleep with the page open, a
    client that never reads) was kept for ever: its frames were encoded and queued (2.6 MB of send buffer each,
    CPU while ``watchers`` stayed above 0), and at shutdown uvicorn cancelled its task with a traceback on the
    station's stderr. Each part must be taken within :data:`STALLED_S`, and none is waited for once the server
    is closing; the stream then ends quietly."""

    def __init__(self, content: Any, *, closing: threading.Event, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.closing = closing

    async def stream_response(self, send: Any) -> None:
        async def taken(message: Any) -> None:
            task = asyncio.ensure_future(send(message))
            waited = 0.0
            while not (await asyncio.wait({task}, timeout=0.25))[0]:
                waited += 0.25
                if waited >= STALLED_S or self.closing.is_set():
                    task.cancel()
                    raise _Stalled
            task.result()

        try:
            await super().stream_response(taken)
        except _Stalled:
            if hasattr(self.body_iterator, "aclose"):
                await self.body_iterator.aclose()  # its ``watchers`` count goes back now, not at garbage collection


def build_app(live: LiveState, *, log_path: Path | None, closing: threading.Event) -> Starlette:
    """The Starlette app over ``live`` (and the log at ``log_path``, read-only, when there is one)."""
    api = _Api(live, log_path, closing)
    routes = [
        Route("/", api.index),
        Route("/api/status", api.status),
        Route("/api/inspections", api.inspections),
        Route("/api/defects", api.defects),
        Route("/api/rate", api.rate),
        Route("/thumb/{item_id}.jpg", api.thumb),  # not Starlette's int: 5000 digits were a 500 and a traceback
        Route("/frame.jpg", api.frame),
        Route("/stream.mjpg", api.stream),
        Route("/metrics", api.metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {HTTPException: api.http_error, DefectEdgeError: api.http_error, Exception: api.http_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _matches(rec: dict, flt: query.Filter) -> bool:
    if flt.defective is not None and bool(rec.get("defective")) != flt.defective:
        return False
    if flt.since is not None:
        return epoch(rec.get("time")) >= flt.since
    return True
