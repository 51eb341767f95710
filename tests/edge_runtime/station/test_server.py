"""The web view over HTTP (served by its own process): JSON endpoints, stream, thumbnails by id, /metrics, token,
4xx for bad requests; the process ends with the run and when the run's process is killed."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from edge_runtime.station.feed import LiveFeed
from edge_runtime.station.options import check_station_options
from tests.edge_runtime.station.conftest import RUN, part_picture, record, write_items

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")

from edge_runtime.station.server import Bind, StationServer  # noqa: E402


def get(url: str, *, token: str | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_for_items(url: str, n: int, *, token: str | None = None, timeout_s: float = 10.0) -> None:
    """The view's process applies the feed's messages a moment after the run sent them."""
    deadline = time.monotonic() + timeout_s
    while json.loads(get(url + "api/status", token=token)[2])["items"] < n:
        assert time.monotonic() < deadline, f"the view never showed {n} items"
        time.sleep(0.02)


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path):
    """A server on a free port fed 8 items (2 defective); ``param`` is the token."""
    token = getattr(request, "param", None)
    live = LiveFeed(station="line-3")
    live.start(RUN, live_source=True)
    recs = [record(i, defective=i % 4 == 0, t=time.time()) for i in range(8)]
    recs[3]["unlike_training"] = ["background brighter than in training", "image size (px) outside the range"]
    live.add(recs, [part_picture() for _ in recs])
    server = StationServer(live, bind=Bind("127.0.0.1", 0), token=token)
    url = server.start()
    wait_for_items(url, 8, token=token)
    yield url, live
    server.stop()
    live.stop()


def test_status_inspections_defects_and_rate(served):
    url, _ = served
    code, headers, body = get(url + "api/status")
    st = json.loads(body)
    assert code == 200 and st["items"] == 8 and st["defective"] == 2 and st["defect_rate"] == 0.25
    assert st["model_version"] == RUN.model_version and st["providers"] == RUN.providers
    assert st["source_state"] == "connected" and st["latency_ms_p99"] >= st["latency_ms_p50"] > 0
    # the record's list of reasons, as words (the page showed "['background brighter ...', ...]")
    last = "background brighter than in training; image size (px) outside the range"
    assert st["station_check"] == {"flagged": 1, "last": last}
    items = json.loads(get(url + "api/inspections?after_id=4")[2])["items"]
    assert [it["id"] for it in items] == [5, 6, 7, 8]
    assert len(json.loads(get(url + "api/inspections?defective=true&since=1h")[2])["items"]) == 2
    defects = json.loads(get(url + "api/defects")[2])["items"]
    assert [d["id"] for d in defects] == [5, 1] and all(d["has_image"] for d in defects)
    rate = json.loads(get(url + "api/rate?hours=8")[2])
    assert sum(b["items"] for b in rate["buckets"]) == 8


def test_thumbnails_by_id_only(served):
    url, _ = served
    code, headers, body = get(url + "thumb/1.jpg")
    assert code == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert get(url + "thumb/2.jpg")[0] == 404  # an OK item keeps no image
    assert get(url + "thumb/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert get(url + "static/..%2Fserver.py")[0] == 404


def test_a_thumbnail_id_too_long_to_be_a_record_is_a_404_not_a_traceback(served, capfd):
    """/thumb/<5000 digits>.jpg was a 500, and each such request wrote a 40-line traceback to the station's stderr
    (Python refuses to convert so many digits to an int)."""
    url, _ = served
    for item in ("9" * 5000, "9" * 30, "\u0661"):  # the last: an Arabic-Indic digit one, which isdigit() accepts
        code, _, body = get(url + f"thumb/{urllib.parse.quote(item)}.jpg")
        assert code == 404 and "no such item" in json.loads(body)["error"], item
    assert get(url + "thumb/1.jpg")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_stream_sends_jpeg_frames(served):
    url, live = served
    with urllib.request.urlopen(url + "stream.mjpg", timeout=5) as r:
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        head = r.read(200)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head


def test_metrics_in_prometheus_text_format(served):
    url, _ = served
    code, headers, body = get(url + "metrics")
    text = body.decode()
    assert code == 200 and headers["content-type"].startswith("text/plain")
    assert 'defect_edge_items_total{station="line-3"} 8' in text
    assert 'defect_edge_defective_total{station="line-3"} 2' in text
    assert "# TYPE defect_edge_items_total counter" in text and 'quantile="0.99"' in text
    assert f'model_version="{RUN.model_version}"' in text


def test_bad_requests_get_4xx_never_a_traceback(served):
    url, _ = served
    for path, code in (
        ("api/inspections?since=soon", 400),
        ("api/inspections?limit=-3", 400),
        ("api/inspections?after_id=x", 400),
        ("api/rate?hours=1e9", 400),
        ("nope", 404),
        ("thumb/abc.jpg", 404),
        ("api/defects?defective=maybe&limit=0", 400),
    ):
        got, _, body = get(url + path)
        assert got == code, path
        assert "Traceback" not in body.decode() and "error" in json.loads(body)
    assert get(url + "api/status", method="POST")[0] == 405  # read-only


@pytest.mark.parametrize("served", ["s3cret"], indirect=True)
def test_a_token_is_checked_on_every_request(served):
    url, _ = served
    for path in ("", "api/status", "metrics", "thumb/1.jpg", "static/station.js", "stream.mjpg"):
        assert get(url + path)[0] == 401, path
        assert get(url + path, token="wrong")[0] == 401, path
    assert get(url + "api/status", token="s3cret")[0] == 200
    assert get(url + "metrics?token=s3cret")[0] == 200
    code, headers, _ = get(url + "?token=s3cret")  # the page sets a cookie for its assets and images
    assert code == 200 and "station_token=s3cret" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]


def test_serving_beyond_localhost_needs_a_token():
    with pytest.raises(click.UsageError, match="needs --token"):
        check_station_options({"serve": Bind.parse("0.0.0.0:8080")})
    check_station_options({"serve": Bind.parse("0.0.0.0:8080"), "token": "t"})
    check_station_options({"serve": Bind.parse("127.0.0.1:8080")})
    with pytest.raises(click.UsageError, match="need --log"):
        check_station_options({"log_keep": 3600.0})
    # a token of spaces let `?token=+` into a page served on 0.0.0.0 (200)
    for blank in (" ", "\t  "):
        for bind in ("0.0.0.0:8080", "127.0.0.1:8080"):
            with pytest.raises(click.UsageError, match="--token is blank"):
                check_station_options({"serve": Bind.parse(bind), "token": blank})


def test_a_taken_port_is_a_clear_error(served):
    from edge_runtime.errors import OutputError

    port = int(served[0].rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OutputError, match="cannot serve there"):
        StationServer(LiveFeed(station="x"), bind=Bind("127.0.0.1", port))


def test_with_a_log_the_view_reads_history_from_it(station_log, log_path: Path):
    write_items(station_log, 40, t0=time.time() - 120)
    live = LiveFeed(station="line-3")
    server = StationServer(live, bind=Bind("127.0.0.1", 0), log_path=log_path)
    url = server.start()
    try:
        assert len(json.loads(get(url + "api/inspections?limit=1000")[2])["items"]) == 40
        defects = json.loads(get(url + "api/defects?limit=3")[2])["items"]
        assert [d["id"] for d in defects] == [37, 33, 29]
        assert get(url + "thumb/37.jpg")[0] == 200 and get(url + "thumb/38.jpg")[0] == 404
        # an id SQLite cannot hold was an HTTP 500 and a 55-line traceback on edge-infer's stderr
        got, _, body = get(url + "thumb/99999999999999999999.jpg")
        assert got == 404 and "error" in json.loads(body)
        assert get(url + "thumb/37.jpg?t=2026-11-27T10%3A00%3A00")[0] == 200  # the page's address for it
        assert sum(b["defective"] for b in json.loads(get(url + "api/rate")[2])["buckets"]) == 10
    finally:
        server.stop()
        live.stop()


@contextlib.contextmanager
def serving_damaged(log_path: Path, sql: str) -> Iterator[str]:
    """The station's view of a log that ``sql`` has damaged (as a disk fault or a hand edit would); yields its URL."""
    import sqlite3

    con = sqlite3.connect(log_path)
    con.execute(sql)
    con.commit()
    con.close()
    live = LiveFeed(station="line-3")
    server = StationServer(live, bind=Bind("127.0.0.1", 0), log_path=log_path)
    try:
        yield server.start()
    finally:
        server.stop()
        live.stop()


def test_a_damaged_record_among_the_last_defects_is_left_out_and_said_to_be(station_log, log_path: Path):
    """One damaged record among the station's last 20 defects made /api/defects an HTTP 500, and the page then
    read "no defective part yet" beside a chart of 17 defects."""
    write_items(station_log, 40, t0=time.time() - 120)
    with serving_damaged(log_path, "UPDATE inspections SET extra = '{bad json' WHERE id = 33") as url:
        code, _, body = get(url + "api/defects?limit=3")
        found = json.loads(body)
        assert code == 200 and [d["id"] for d in found["items"]] == [37, 29]  # of the last 3, 33 left out
        assert len(found["damaged"]) == 1 and "item 33" in found["damaged"][0]


def test_a_stations_page_shows_only_its_own_items_from_a_shared_log(station_log, log_path: Path):
    """Two stations writing one --log: line-3's page showed line-4's defects in its gallery, chart and records,
    beside counters of its own."""
    from edge_runtime.station.log import InspectionLog, LogConfig

    write_items(station_log, 8, t0=time.time() - 60)  # line-3: every 4th defective
    other = InspectionLog(LogConfig(log_path, station="line-4"))
    other.start_run(RUN)
    write_items(other, 12, defective_every=1, t0=time.time() - 30)  # line-4: all defective
    other.close()
    live = LiveFeed(station="line-3")
    server = StationServer(live, bind=Bind("127.0.0.1", 0), log_path=log_path)
    url = server.start()
    try:
        items = json.loads(get(url + "api/inspections?limit=1000")[2])["items"]
        assert len(items) == 8 and {r["station"] for r in items} == {"line-3"}
        defects = json.loads(get(url + "api/defects?limit=100")[2])["items"]
        assert len(defects) == 2 and {d["station"] for d in defects} == {"line-3"}
        assert sum(b["items"] for b in json.loads(get(url + "api/rate")[2])["buckets"]) == 8
        # the other station's pictures are not served by id either (they were: /thumb/9.jpg was line-4's part)
        assert all(get(url + f"thumb/{d['id']}.jpg")[0] == 200 for d in defects)
        assert [get(url + f"thumb/{i}.jpg")[0] for i in range(9, 21)] == [404] * 12
    finally:
        server.stop()
        live.stop()


def test_a_damaged_log_record_is_one_json_error_on_the_page(station_log, log_path: Path):
    """A run's providers stored as '{}' made /api/inspections an "internal error" with a traceback on stderr."""
    write_items(station_log, 4)
    with serving_damaged(log_path, "UPDATE runs SET providers = '{}'") as url:
        got, _, body = get(url + "api/inspections")
        assert got == 500 and "damaged record" in json.loads(body)["error"]


def test_the_stream_keeps_to_serve_fps():
    """``--serve-fps 2``: the page's stream sends at most 2 pictures a second, however fast the run goes."""
    import threading

    from edge_runtime.station.options import open_station

    listener = open_station({"serve": Bind.parse("127.0.0.1:0"), "serve_fps": 2.0}, say=lambda m: None)
    live, stop = listener.live, threading.Event()
    assert live.max_fps == 2.0
    live.start(RUN, live_source=True)

    def run() -> None:  # a 50 FPS source
        i = 0
        while not stop.is_set():
            live.add([record(i, defective=False, t=time.time())], [part_picture()])
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=run, daemon=True)
    feeder.start()
    try:
        frames, seconds = 0, 3.0
        with urllib.request.urlopen(listener.server.url + "stream.mjpg", timeout=5) as r:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                frames += r.read1(65536).count(b"--frame\r\n")
        assert 2 <= frames <= 2 * seconds + 2, f"{frames} frames in {seconds} s at --serve-fps 2"
    finally:
        stop.set()
        feeder.join()
        listener.close()


def test_serve_fps_out_of_range_is_a_usage_error(tmp_path: Path):
    from click.testing import CliRunner

    from edge_runtime.cli import main

    res = CliRunner().invoke(main, ["--source", str(tmp_path), "--serve", "127.0.0.1:0", "--serve-fps", "0"])
    assert res.exit_code == 2 and "--serve-fps" in res.output


def test_a_page_that_was_polling_is_told_the_end_of_the_run_before_the_view_closes(served):
    """The view closed within half a second of the run's end; a page polling every second almost never saw
    "finished" or "lost", and kept the counts of its last poll ("running", 648 of 717 items)."""
    url, live = served
    seen: list[dict] = []

    def page() -> None:  # as station.js polls: a second after each answer, until the view has closed
        while True:
            try:
                seen.append(json.loads(get(url + "api/status")[2]))
            except OSError:
                return
            time.sleep(1.0)

    poller = threading.Thread(target=page, daemon=True)
    poller.start()
    time.sleep(0.3)
    live.add([record(8, defective=True, t=time.time())], [part_picture()])
    live.finish(error="camera lost")
    live.stop()  # the run ends: its pipe closes, the view closes once the page has been told
    poller.join(10)
    assert seen[-1]["source_state"] == "lost" and seen[-1]["items"] == 9, seen[-1]


def test_the_view_does_not_linger_without_a_page_or_after_a_crash():
    from edge_runtime.station.live import LiveState

    live = LiveState(station="line-3")
    try:
        live.finish()
        t0 = time.monotonic()
        live.linger(2.0)  # nobody polled: the view closes at once
        live.status()  # a page polled, and was told the end of the run
        live.defects()  # and asked for the gallery once more, its last defects (the page does so at the end)
        live.linger(2.0)
        fresh = LiveState(station="line-3")
        fresh.status()  # polled, but the run never said it ended (killed): nothing to tell
        fresh.linger(2.0)
        fresh.stop()
        assert time.monotonic() - t0 < 0.5
        live.final_told = False  # polled before the end, not yet told: it waits for the page, at most max_s
        t0 = time.monotonic()
        live.linger(0.4)
        assert 0.35 <= time.monotonic() - t0 < 1.5
        live.final_told, live.final_gallery = True, False  # told the end, but not yet given the last gallery: waits
        t0 = time.monotonic()
        live.linger(0.4)
        assert 0.35 <= time.monotonic() - t0 < 1.5
    finally:
        live.stop()


def test_frames_without_a_part_count_as_warnings_on_the_page():
    """A black frame (no part: the whole frame judged) was an ordinary item on the page, "warnings 0", though the
    counter says it counts verdicts not to be trusted, "no part found" among them."""
    from edge_runtime.station.live import LiveState
    from edge_runtime.summary import NO_PART

    live = LiveState(station="line-3")
    try:
        recs = [record(i, defective=False, t=time.time()) for i in range(4)]
        recs[1]["unlike_training"] = [f"{NO_PART} (the whole frame was used)"]
        recs[2]["warning"] = "corrupt JPEG data: the decoder concealed damage"
        recs[3]["unlike_training"] = ["background brighter than any training image (240 > 214)"]
        live.add(recs, [None] * 4)
        st = live.status()
    finally:
        live.stop()
    assert st["warnings"] == 2 and st["station_check"]["flagged"] == 2


def test_fps_counts_the_items_of_the_window_however_they_were_batched():
    """A folder run hands the view batches of 64 items under one stamp: the page showed (64 - 1) / 1e-6 FPS, and
    with 512 stamps kept, a fast run's 2-s window held a fraction of a second."""
    from edge_runtime.station.live import LiveState

    live = LiveState(station="line-3")
    try:
        live.start(RUN, live_source=False)
        t0 = live.counting_since
        assert live.fps(now=t0 + 0.05) == 0.0  # too soon to tell a rate
        for k in range(40):  # 40 batches of 64, 0.05 s apart: 1280 items/s for 2 s
            live.add([record(64 * k + i, defective=False, t=time.time()) for i in range(64)], [None] * 64,
                     at=(t0 + 0.05 * (k + 1), time.time()))  # fmt: skip
        assert live.fps(now=t0 + 2.0) == pytest.approx(1280, rel=0.05)
        assert live.fps(now=t0 + 1.0) == pytest.approx(1280, rel=0.05)  # the first second: items / time since start
        assert live.fps(now=t0 + 5.0) == 0.0  # nothing for 3 s
        live.add([record(9999, defective=False, t=time.time())], [None], at=(t0 + 5.0, time.time()))
        assert live.fps(now=t0 + 5.5) == 0.5  # one item in the last 2 s
    finally:
        live.stop()


def test_the_stream_shows_no_rate_on_a_frame_shown_before_any_count(monkeypatch):
    """The first frame after a pause reaches the stream before its record is counted: it was drawn with
    "0.0 FPS". Without a rate the overlay now names none; once items are counted it shows their rate."""
    import numpy as np

    from edge_runtime.station import live as live_module

    drawn: list[float | None] = []
    real = live_module.encode_frame
    monkeypatch.setattr(live_module, "encode_frame", lambda p, r, *, fps: drawn.append(fps) or real(p, r, fps=fps))
    live = live_module.LiveState(station="line-3", max_fps=50.0)
    try:
        live.start(RUN, live_source=True)
        live.want_frames()
        live.show(np.full((120, 160), 90, np.uint8), record(1, defective=False))
        deadline = time.monotonic() + 5.0
        while not drawn and time.monotonic() < deadline:
            time.sleep(0.02)
        assert drawn == [None]
        now = time.monotonic()
        live.counting_since = now - 1.0
        live.add([record(k, defective=False) for k in range(2, 12)], [None] * 10, at=(now, time.time()))
        live.show(np.full((120, 160), 90, np.uint8), record(12, defective=False))
        while len(drawn) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert drawn[1] is not None and drawn[1] > 0
    finally:
        live.stop()


def test_the_streams_picture_shows_the_defect_box_of_a_heatmap_run():
    """With ``edge-infer --heatmap`` the records carry ``defect_box`` (source pixels); the page's stream drew the
    verdict without it. Now the box is drawn, scaled with the picture (1920 px wide -> 960)."""
    import cv2
    import numpy as np

    from edge_runtime.station.live import encode_frame

    picture = np.full((1080, 1920), 90, np.uint8)
    rec = record(1, defective=True) | {"defect_box": [1200, 400, 1300, 500]}
    with_box = cv2.imdecode(np.frombuffer(encode_frame(picture, rec, fps=None), np.uint8), cv2.IMREAD_COLOR)
    without = cv2.imdecode(np.frombuffer(encode_frame(picture, record(1, defective=True), fps=None), np.uint8),
                           cv2.IMREAD_COLOR)  # fmt: skip
    assert with_box.shape[:2] == (540, 960)
    # the box's white outline at its place on the smaller picture (600..650, 200..250), nothing there without it
    edge = with_box[200:251, 598:603].astype(int)
    assert (edge.min(axis=2) > 200).any(), "no white outline where the box's left side is drawn"
    assert without[200:251, 598:603].max() < 130
    elsewhere = with_box[300:400, 100:400]  # far from the box: the picture as it was
    assert abs(int(elsewhere.mean()) - 90) < 10


@pytest.mark.parametrize("how", ["stalled", "closing"])
def test_a_stream_client_that_stops_reading_is_dropped(monkeypatch, how: str):
    """A /stream.mjpg client that never read was kept for ever (14 min, 2.6 MB of send buffer each, frames encoded
    for it), and at shutdown uvicorn cancelled its task with a traceback on the station's stderr. A part not taken
    within STALLED_S, or not taken when the server closes, ends the stream quietly, its watcher count given back."""
    import asyncio
    import threading

    import edge_runtime.station.app as app

    monkeypatch.setattr(app, "STALLED_S", 0.5)
    closing, sent, watchers = threading.Event(), [], [0]

    async def frames():
        watchers[0] += 1
        try:
            while True:
                yield b"--frame\r\n"
                await asyncio.sleep(0.01)
        finally:
            watchers[0] -= 1

    async def send(message):  # takes the response's head and one part, then blocks as a full socket does
        sent.append(message["type"])
        if len(sent) > 2:
            await asyncio.Event().wait()

    async def run() -> float:
        response = app._StreamToReaders(frames(), closing=closing, media_type="multipart/x-mixed-replace")
        if how == "closing":
            asyncio.get_running_loop().call_later(0.1, closing.set)
        t0 = time.monotonic()
        await asyncio.wait_for(response.stream_response(send), 5)
        return time.monotonic() - t0

    took = asyncio.run(run())
    assert took < (0.45 if how == "closing" else 1.5), took
    assert sent[:2] == ["http.response.start", "http.response.body"] and watchers[0] == 0


def test_without_a_token_the_view_answers_only_requests_naming_this_computer(served):
    """Any Host was accepted: a web page elsewhere, its name resolved to 127.0.0.1 (DNS rebinding), could read the
    station's records through the browser of the station's own computer."""
    url, _ = served
    port = url.rsplit(":", 1)[1].strip("/")
    for host, code in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), (f"attacker.example:{port}", 403)):
        req = urllib.request.Request(url + "api/status", headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                got, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            got, body = e.code, e.read()
        assert got == code, host
        if code == 403:
            assert "serves this computer only" in json.loads(body)["error"]
