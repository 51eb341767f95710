"""The open station page for ``benchmarks.station``: headless Chromium (the real page, driven by playwright), or
an HTTP client in another process that fetches what the page fetches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

HTTP_VIEWER = """
import sys, threading, time, urllib.request
url, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
def stream():
    with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
        while time.monotonic() < end and r.read(65536):
            pass
threading.Thread(target=stream, daemon=True).start()
while time.monotonic() < end:
    for path in ("api/status", "api/defects?limit=20"):
        urllib.request.urlopen(url + path, timeout=5).read()
    time.sleep(1.0)
"""


class Viewer:
    """The open page: headless Chromium when available, else an HTTP client doing what the page does."""

    def __init__(self, *, browser: bool = True) -> None:
        self.browser = self.pw = self.page = None
        self.cpu_percent: list[float] = []  # the browser's CPU use while it shows the page
        self.kind = "an HTTP client in another process (stream + the page's polling)"
        if browser and Path(CHROMIUM).exists():
            try:
                from playwright.sync_api import sync_playwright

                self.pw = sync_playwright().start()
                self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                self.kind = "headless Chromium (the real page)"
            except ImportError:
                pass

    def watch(self, url: str, seconds: float, screenshot: Path | None = None) -> None:
        if self.browser is None:
            self._http(url, seconds)
            return
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_timeout(1000)
        cpu0, t0 = browser_cpu(), time.monotonic()
        page.wait_for_timeout((seconds - 1) * 1000)
        self.cpu_percent.append(round(100 * browser_cpu_s(cpu0, browser_cpu()) / (time.monotonic() - t0), 1))
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.close()

    def _http(self, url: str, seconds: float) -> None:
        """What the page fetches, from another process (as a browser would be): the stream and 1 s polling."""
        subprocess.run([sys.executable, "-c", HTTP_VIEWER, url, str(seconds)], check=False, timeout=seconds + 30)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.pw.stop()


def browser_cpu() -> dict[str, int]:
    """CPU ticks used so far by each chromium process (by pid)."""
    ticks = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                name, rest = f.read().rsplit(")", 1)
            if "chrom" in name:
                parts = rest.split()
                ticks[pid] = int(parts[11]) + int(parts[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return ticks


def browser_cpu_s(before: dict[str, int], after: dict[str, int]) -> float:
    """CPU seconds between two :func:`browser_cpu` readings (processes that started in between count fully)."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / os.sysconf("SC_CLK_TCK")
