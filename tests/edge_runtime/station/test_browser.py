"""The station page in a real headless Chromium (Debian's chromium driven by playwright) during a live run.

A synthetic 30 FPS camera (bright frames are defective for the tiny test model) runs through ``run_inference``
with ``--log`` and ``--serve`` (token set); the page must load without console errors, its counters advance,
a defective part appears in the gallery, the stream shows frames and a wrong token gets 401. The page is served
by the web view's own process, which ends with the run.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.station_viewer import CHROMIUM_ARGS
from edge_runtime.infer import InferConfig, run_inference
from edge_runtime.inputs import SourceKind

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install '.[dev]')")
if not Path(CHROMIUM).exists():
    pytest.skip("browser tests need Debian's chromium (apt-get install -y chromium)", allow_module_level=True)


class PacedCamera:
    """30 FPS frames: a bright (defective) part every 5th frame, dark (OK) otherwise; ends when ``stop`` is set."""

    def __init__(self, stop: threading.Event, fps: float = 30.0) -> None:
        self.stop, self.period, self.n, self.next = stop, 1.0 / fps, 0, time.monotonic()

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.stop.is_set():
            return False, None
        self.next += self.period
        time.sleep(max(0.0, self.next - time.monotonic()))
        self.n += 1
        bright = self.n % 5 == 0
        frame = np.full((240, 320, 3), 210 if bright else 30, np.uint8)
        frame[40:200, 80:240] = (250, 250, 255) if bright else (70, 70, 80)
        return True, frame

    def release(self) -> None:
        pass


@pytest.fixture
def live_station(tmp_path: Path, tiny_model: Path):
    """A live run with --log and --serve (token 's3cret') in a background thread; yields the page URL."""
    from edge_runtime.station.options import open_station
    from edge_runtime.station.server import Bind

    stop = threading.Event()
    opts = {"log": tmp_path / "station.db", "serve": Bind("127.0.0.1", 0), "token": "s3cret", "station": "line-3"}
    listener = open_station(opts, say=lambda m: None)
    cfg = InferConfig(
        camera="synthetic",
        model=tiny_model,
        quiet=True,
        listener=listener,
        max_reconnects=0,
        capture=lambda: PacedCamera(stop),
    )
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(out=run_inference(cfg, log=lambda m: None)), daemon=True)
    thread.start()
    server = listener.server
    assert server.process.pid != os.getpid() and server.process.is_alive()
    yield server.url
    stop.set()
    thread.join(10)
    listener.close()
    assert not thread.is_alive() and result["out"][0].items > 0
    assert not server.process.is_alive() and server.process.exitcode == 0
    assert listener.live is not None and listener.live.info is not None
    assert SourceKind.CAMERA.live


def read_int(page, selector: str) -> int:
    return int(page.text_content(selector) or "0")


def test_station_page_in_chromium(live_station: str, tmp_path: Path):
    url = live_station
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            stranger = browser.new_page()
            assert stranger.goto(url + "?token=wrong").status == 401
            assert stranger.goto(url).status == 401
            assert stranger.goto(url + "api/status").status == 401

            page = browser.new_page(viewport={"width": 1280, "height": 860})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            assert page.goto(url + "?token=s3cret").status == 200
            page.wait_for_function("Number(document.getElementById('items').textContent) > 0", timeout=15000)
            first = read_int(page, "#items")
            page.wait_for_function(
                f"Number(document.getElementById('items').textContent) > {first + 10}", timeout=15000
            )
            assert read_int(page, "#defective") > 0
            assert page.text_content("#source-state") == "connected"
            assert "tiny" in (page.text_content("#model") or "") or "onnx" in (page.text_content("#model") or "")

            page.wait_for_selector("#gallery figure img", timeout=15000)
            page.wait_for_function("[...document.querySelectorAll('#gallery img')].some(i => i.naturalWidth > 0)")
            assert "score" in (page.text_content("#gallery figure figcaption") or "")

            page.wait_for_function("document.getElementById('stream').naturalWidth > 0", timeout=15000)
            assert page.eval_on_selector("#stream", "i => i.naturalWidth") == 320
            page.wait_for_selector("#chart rect.bar", timeout=15000)

            page.screenshot(path=str(tmp_path / "station.png"))
            assert (tmp_path / "station.png").stat().st_size > 10_000
            assert problems == []

            # A card whose picture is gone by the time the browser asks (without a log the web view keeps the
            # last 24 defects' pictures only): a placeholder that says so, never a broken image.
            page.evaluate(
                "document.getElementById('gallery').prepend(galleryCard({id: 2147483000, has_image: true, "
                "time: new Date().toISOString(), score: 0.9, source: 'x', frame: null}))"
            )
            page.wait_for_function(
                "[...document.querySelectorAll('#gallery .pending')].some(p => p.textContent === "
                "'picture no longer kept')",
                timeout=10000,
            )
            assert page.evaluate("[...document.querySelectorAll('#gallery img')].every(i => i.naturalWidth > 0)")
        finally:
            browser.close()


def test_the_page_shows_the_end_of_the_run_and_then_that_the_station_no_longer_answers(tmp_path: Path, tiny_model):
    """The page kept "connected", its FPS and the last verdict for ever after the run was killed, and almost never
    showed "finished" or "lost": the view closed before the page's next poll."""
    from edge_runtime.station.options import open_station
    from edge_runtime.station.server import Bind

    stop = threading.Event()
    opts = {"log": tmp_path / "station.db", "serve": Bind("127.0.0.1", 0), "token": None, "station": "line-3"}
    listener = open_station(opts, say=lambda m: None)
    cfg = InferConfig(
        camera="synthetic", model=tiny_model, quiet=True, listener=listener, max_reconnects=0,
        capture=lambda: PacedCamera(stop),
    )  # fmt: skip
    result: dict = {}
    run = threading.Thread(target=lambda: result.update(out=run_inference(cfg, log=lambda m: None)), daemon=True)
    run.start()
    url = listener.server.url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})  # a phone
            assert page.goto(url).status == 200
            page.wait_for_function("Number(document.getElementById('items').textContent) > 5", timeout=15000)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375  # the header wrapped: 440 px wide
            assert page.text_content("#warnings") == "0"
            # a defect whose verdict carries a warning (a damaged frame) is marked as such in the gallery
            card = page.evaluate_handle(
                "galleryCard({id: 1, has_image: false, time: new Date().toISOString(), score: 0.9, source: 'cam', "
                "frame: 3, warning: 'damaged JPEG data'})"
            )
            assert card.evaluate("c => c.classList.contains('warned') && c.querySelector('.warning') !== null")
            assert "warning: damaged JPEG data" in card.evaluate("c => c.querySelector('figcaption').title")
            # a damaged record among the last defects is said to be left out, never "no defective part yet"
            page.evaluate("showGallery({items: [], damaged: ['the extra fields of item 33 is not JSON']})")
            assert page.is_hidden("#gallery-empty") and page.is_visible("#gallery-note")
            assert "1 damaged record in the inspection log left out" in (page.text_content("#gallery-note") or "")
            # a score short of 1 is not shown as "score 1.000" (it read as certainty)
            assert page.evaluate("[scoreText(0.9996), scoreText(0.999999), scoreText(1), scoreText(0.25)]") == [
                "0.9996",
                "0.999999",
                "1.000",
                "0.250",
            ]
            stop.set()  # the camera is gone: no reconnect allowed, the run ends "lost"
            run.join(10)
            listener.close()
            items = result["out"][0].items
            page.wait_for_function(
                "document.getElementById('source-state').textContent === 'lost · view closed'", timeout=15000
            )
            assert read_int(page, "#items") == items  # the run's final count, not that of an earlier poll
            assert page.evaluate("endRefreshed")  # the gallery and chart were asked once more at the end
            # once the view has closed, the gallery's polls get no answer: the contact banner tells it, and the
            # gallery keeps its last cards without a "could not be read" note (it said so after every normal end)
            page.wait_for_timeout(6000)
            assert page.is_hidden("#gallery-note")
            assert page.text_content("#fps") == "–"  # not the last FPS measured, for ever
            assert "The run ended (lost: synthetic: lost, and not reopened" in (page.text_content("#contact") or "")
            assert page.eval_on_selector("#stream", "i => i.classList.contains('stale')")
            page.screenshot(path=str(tmp_path / "ended.png"))
        finally:
            browser.close()


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_station_that_stops_answering_is_shown_as_no_contact(tmp_path: Path, how: str):
    """After a SIGKILL of the station the page showed "connected", FPS 4.0 and the last verdict 20 s on; a station
    that hangs (or a network that goes silent) fails no request at all: the page showed nothing for ever."""
    import signal

    from edge_runtime.station.feed import LiveFeed
    from edge_runtime.station.server import Bind, StationServer
    from tests.edge_runtime.station.conftest import RUN, part_picture, record

    live = LiveFeed(station="line-3-west-inspection-cell")  # a long name: the header must still fit a phone
    live.start(RUN, live_source=True)
    live.add([record(i, defective=i % 4 == 0, t=time.time()) for i in range(8)], [part_picture()] * 8)
    server = StationServer(live, bind=Bind("127.0.0.1", 0))
    url = server.start()
    stopped = False
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 375, "height": 700})
                # no picture was sent: the stream's first frame, which the "load" event waits for, never comes
                assert page.goto(url, wait_until="domcontentloaded").status == 200
                page.wait_for_function("document.getElementById('items').textContent === '8'", timeout=15000)
                assert page.text_content("#source-state") == "connected" and page.is_hidden("#contact")
                assert page.evaluate("document.documentElement.scrollWidth") <= 375  # was 438 px with this name
                # the station is gone without a word, or hangs with its connections open
                os.kill(server.process.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
                stopped = how == "hung"
                page.wait_for_function(
                    "document.getElementById('source-state').textContent === 'no contact'", timeout=15000
                )
                assert "No contact with the station since" in (page.text_content("#contact") or "")
                assert page.text_content("#items") == "8"  # the last figures stay, marked as such
            finally:
                browser.close()
    finally:
        if stopped:  # a stopped process takes SIGKILL only
            os.kill(server.process.pid, signal.SIGKILL)
        server.stop()
        live.stop()


def test_a_restarted_station_shows_its_own_pictures_not_the_last_runs(tmp_path: Path):
    """Thumbnails are kept an hour by the browser, and a restarted station (or a new log) numbers its items from 1
    again: an open page showed the new run's times and scores over the old run's pictures of the same ids."""
    import socket
    import urllib.request

    from edge_runtime.station.feed import LiveFeed
    from edge_runtime.station.server import Bind, StationServer
    from tests.edge_runtime.station.conftest import RUN, record

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rng = np.random.default_rng(0)

    def station(t: float) -> tuple[LiveFeed, StationServer, str]:
        live = LiveFeed(station="line-3")
        live.start(RUN, live_source=True)
        picture = rng.integers(0, 256, (160, 160), np.uint8)  # each run's part: another picture
        live.add([record(1, defective=True, t=t)], [picture])
        server = StationServer(live, bind=Bind("127.0.0.1", port))
        return live, server, server.start()

    shown = """async () => {
        const img = document.querySelector('#gallery img');
        const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
        return [img.src, bytes.length, bytes.reduce((a, b) => (a * 31 + b) % 1000003, 0)];
    }"""

    def served(url: str) -> list:
        data = urllib.request.urlopen(url + "thumb/1.jpg", timeout=10).read()
        checksum = 0
        for b in data:
            checksum = (checksum * 31 + b) % 1000003
        return [len(data), checksum]

    live, server, url = station(time.time() - 600)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#gallery img", timeout=15000)
            first = page.evaluate(shown)
            assert first[1:] == served(url)
            server.stop()
            live.stop()
            live, server, url = station(time.time())  # the same address, item 1 again, another part
            page.wait_for_function(f"document.querySelector('#gallery img').src !== {first[0]!r}", timeout=20000)
            again = page.evaluate(shown)
            assert again[1:] == served(url) and again[1:] != first[1:]
        finally:
            browser.close()
            server.stop()
            live.stop()
