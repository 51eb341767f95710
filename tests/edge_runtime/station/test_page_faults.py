"""What the station page says under faults an operator meets: a station restarted with another --token, a
thumbnail the network failed to bring. The page runs in a real headless Chromium (Debian's chromium driven by
playwright); those tests skip with the reason where either is missing, as ``test_browser.py`` does."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edge_runtime.station.conftest import RUN, part_picture, record

pytest.importorskip("starlette", reason="the web view needs the [station] extra")

from edge_runtime.station.feed import LiveFeed  # noqa: E402
from edge_runtime.station.server import Bind, StationServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STATE = "document.getElementById('source-state').textContent"


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip("browser tests need Debian's chromium (apt-get install -y chromium)")
    from benchmarks.station_viewer import CHROMIUM_ARGS

    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Station:
    """A web view fed 8 items (2 defective, with pictures; no log) on ``port``, as a running station shows them."""

    def __init__(self, port: int, *, token: str | None = None) -> None:
        self.live = LiveFeed(station="line-3")
        self.live.start(RUN, live_source=True)
        recs = [record(i, defective=i % 4 == 0, t=time.time()) for i in range(8)]
        self.live.add(recs, [part_picture() for _ in recs])
        self.server = StationServer(self.live, bind=Bind("127.0.0.1", port), token=token)
        self.url = self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.live.stop()


def test_a_wrong_token_is_told_with_what_to_do():
    """The page opened without the token (or with a wrong one) showed only {"error": "missing or wrong token"}."""
    station = Station(0, token="s3cret")
    try:
        try:
            urllib.request.urlopen(station.url + "?token=wrong", timeout=5)
            raise AssertionError("a wrong token was let in")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            said = json.loads(exc.read())["error"]
    finally:
        station.stop()
    assert said.startswith("missing or wrong token") and "/?token=" in said and "--token" in said


def test_a_station_restarted_with_another_token_says_so_not_no_contact(browser, tmp_path: Path):
    """A station restarted with another --token answers the open page with 401: the page said "no contact with the
    station ... Is edge-infer still running?" (or, after a normal end, "view closed") of a station that ran, and
    "the last defects could not be read (HTTP 401); see the station's log"."""
    port = free_port()
    station = Station(port, token="s3cret")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        # no picture was sent for the stream: its first frame, which "load" waits for, never comes
        assert page.goto(station.url + "?token=s3cret", wait_until="domcontentloaded").status == 200
        page.wait_for_function("document.getElementById('items').textContent === '8'", timeout=15000)
        station.stop()
        station = Station(port, token="n3w")  # the same address, the token changed
        page.wait_for_function(f"{STATE} === 'token refused'", timeout=15000)
        said = page.text_content("#contact") or ""
        assert "refuses this page's token (HTTP 401)" in said and f"127.0.0.1:{port}/?token=SECRET" in said
        assert page.is_visible("#contact") and page.text_content("#items") == "8"  # the last figures, marked
        page.wait_for_timeout(6000)  # the gallery's poll got its 401 too: the banner tells it, not "see the log"
        assert page.is_hidden("#gallery-note") and page.evaluate(STATE) == "token refused"
        page.screenshot(path=str(tmp_path / "token_refused.png"))
        # opened again with the new token, as the banner says: live again
        assert page.goto(station.url + "?token=n3w", wait_until="domcontentloaded").status == 200
        page.wait_for_function(f"{STATE} === 'connected'", timeout=15000)
        assert page.is_hidden("#contact")
    finally:
        station.stop()


def test_a_thumbnail_the_network_failed_to_bring_is_fetched_again_not_called_gone(browser):
    """A thumbnail whose request failed (the network, a restarting station) was shown as "picture no longer kept"
    for as long as its card stayed, hours where defects are rare, though the picture was there all along."""
    station = Station(0)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.route("**/thumb/**", lambda route: route.abort("internetdisconnected"))
        assert page.goto(station.url, wait_until="domcontentloaded").status == 200
        page.wait_for_function("document.querySelectorAll('#gallery .pending').length === 2", timeout=15000)
        said = page.eval_on_selector_all("#gallery .pending", "boxes => boxes.map(b => b.textContent)")
        assert said == ["picture not loaded", "picture not loaded"]
        page.unroute("**/thumb/**")  # the network is back: the next refresh (5 s) draws the pictures
        page.wait_for_function(
            "[...document.querySelectorAll('#gallery img')].filter(i => i.naturalWidth > 0).length === 2",
            timeout=15000,
        )
        assert page.locator("#gallery .pending").count() == 0
    finally:
        station.stop()


CHART_SCALE = "(() => { const m = document.getElementById('chart').getScreenCTM(); return [m.a, m.d]; })()"
LABELS_INSIDE = """(() => {
    const svg = document.getElementById('chart'), box = svg.getBoundingClientRect();
    return [...svg.querySelectorAll('text')].every((t) => {
        const r = t.getBoundingClientRect();
        return r.left >= box.left - 0.5 && r.right <= box.right + 0.5;
    });
})()"""


def test_the_chart_keeps_its_letters_whole_in_a_phone_sized_window(browser, tmp_path: Path):
    """The chart was drawn 600 units wide and stretched to its box: in a phone's 375 px window its axis labels were
    squeezed to half their width (the "57%" of the scale 6 px wide) and the last hour's label was cut at the edge."""
    station = Station(0)
    try:
        page = browser.new_page(viewport={"width": 375, "height": 800})
        assert page.goto(station.url, wait_until="domcontentloaded").status == 200
        page.wait_for_selector("#chart rect.bar", timeout=15000)
        for width, height in ((375, 800), (812, 375), (1280, 860)):  # a phone, turned, a station screen
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(500)
            across, down = page.evaluate(CHART_SCALE)
            assert abs(across - down) < 0.02, (width, across, down)  # letters as wide as they are tall
            assert page.evaluate(LABELS_INSIDE), width
        page.set_viewport_size({"width": 375, "height": 800})
        page.wait_for_timeout(500)
        page.locator("section.chart").screenshot(path=str(tmp_path / "chart_phone.png"))
    finally:
        station.stop()


RED = "rgb(138, 31, 31)"  # the banner of a fault (station.css .banner)


@pytest.mark.parametrize(("end", "alarm"), [({}, False), ({"error": "camera: lost and not back"}, True)])
def test_a_run_that_finished_is_not_shown_as_an_alarm(browser, end: dict, alarm: bool):
    """A folder or video run that came to its end showed "The run ended (finished) and its web view has closed" in
    the same red banner as a lost camera or a station that stopped answering."""
    station = Station(0)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        assert page.goto(station.url, wait_until="domcontentloaded").status == 200
        page.wait_for_function("document.getElementById('items').textContent === '8'", timeout=15000)
        station.live.finish(**end)
    finally:
        station.stop()  # the view waits until the page has been told of the end
    state = "lost" if alarm else "finished"
    page.wait_for_function(f"{STATE} === '{state} · view closed'", timeout=15000)
    assert page.is_visible("#contact") and f"The run ended ({state}" in (page.text_content("#contact") or "")
    colour = page.eval_on_selector("#contact", "b => getComputedStyle(b).backgroundColor")
    assert (colour == RED) is alarm, colour


def test_a_page_opened_during_an_outage_says_since_when_no_item_came(browser):
    """A page opened while the camera was down said "last picture: no new item since" the moment it was opened: a
    camera down for an hour read as down just now."""
    station = Station(0)
    try:
        last_item = time.time()  # Station's 8 items came just now
        station.live.event("cam: source dropped after 8 frames; reconnecting")
        time.sleep(4)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        assert page.goto(station.url, wait_until="domcontentloaded").status == 200
        page.wait_for_function(f"{STATE} === 'reconnecting'", timeout=15000)
        page.wait_for_function("document.getElementById('stream-note').textContent.startsWith('last picture')")
        said = page.text_content("#stream-note") or ""
        around = page.evaluate(f"[-1, 0, 1].map((s) => clock({last_item * 1000} + 1000 * s))")
        assert said.removeprefix("last picture: no new item since ") in around, (said, around)
    finally:
        station.stop()
