"""The open station page for ``benchmarks.station``, in a process of its own (a real browser is never inside the
inspection process, so no playwright code may run there either: its dispatcher would compete for the GIL).

``python -m benchmarks.station_viewer URL SECONDS [--screenshot PNG] [--http] [--nice N]`` opens the page in
headless Chromium (playwright + Debian's chromium; ``--http``, or either missing: an HTTP client that fetches what
the page fetches), prints one JSON line when the page is open, watches it for SECONDS, then prints one JSON line
with its CPU use and exits:

    {"open": true, "kind": "headless Chromium (the real page)"}
    {"kind": "...", "seconds": 14.0, "browser_cpu_percent": 14.2, "viewer_cpu_percent": 15.1, "nice": 0}

CPU use is in percent of one core: ``browser_cpu_percent`` counts the Chromium processes, ``viewer_cpu_percent``
this process and all its descendants (playwright's driver included).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from edge_runtime.cli_support import Command, FiniteFloatRange, debug_option, friendly_errors, version_option

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
BROWSER_KIND = "headless Chromium (the real page)"
HTTP_KIND = "an HTTP client in another process (stream + the page's polling)"
GALLERY_LOADED = "[...document.querySelectorAll('#gallery img')].every(i => i.complete)"


def browser_available() -> bool:
    """Chromium and playwright are both there (checked without importing playwright)."""
    return Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None


# -- the parent's side: benchmarks.station ---------------------------------------------------------------------
class Viewer:
    """Opens the page in a ``python -m benchmarks.station_viewer`` process per run and collects its CPU use.

    >>> viewer = Viewer(browser=True)                       # doctest: +SKIP
    >>> session = viewer.open(url, 14.0)                    # returns once the page is open
    >>> ...                                                 # the measured run
    >>> viewer.finish(session)                              # its CPU use lands in viewer.cpu_percent
    """

    def __init__(self, *, browser: bool = True, nice: int = 0, like_user: bool = False) -> None:
        self.browser = browser and browser_available()
        self.nice, self.like_user = nice, like_user
        self.kind = BROWSER_KIND if self.browser else HTTP_KIND
        self.cpu_percent: list[float] = []  # the browser's CPU use while it shows the page (Chromium processes)
        self.viewer_cpu_percent: list[float] = []  # the whole viewer process tree

    def open(self, url: str, seconds: float, screenshot: Path | None = None, timeout_s: float = 90.0) -> Any:
        """Start the viewer process; return once it reports the page open (it then watches ``seconds``)."""
        cmd = [sys.executable, "-m", "benchmarks.station_viewer", url, f"{seconds:g}", "--nice", str(self.nice)]
        cmd = without_sys_nice() + cmd if self.like_user else cmd
        if screenshot is not None:
            cmd += ["--screenshot", str(screenshot)]
        if not self.browser:
            cmd.append("--http")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.strip().startswith("{"):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the station viewer did not open {url} (exit {proc.returncode})")
        self.kind = json.loads(line)["kind"]
        return proc

    def finish(self, proc: subprocess.Popen, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait for the viewer's report (its watch time ends on its own) and record its CPU use."""
        out, _ = proc.communicate(timeout=timeout_s)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the station viewer failed (exit {proc.returncode})")
        report = json.loads(lines[-1])
        if report.get("browser_cpu_percent") is not None:
            self.cpu_percent.append(report["browser_cpu_percent"])
        self.viewer_cpu_percent.append(report["viewer_cpu_percent"])
        return report

    def close(self) -> None:
        """Nothing to close: each run's viewer process ends by itself (kept for the callers' ``finally``)."""


def without_sys_nice() -> list[str]:
    """The prefix that starts a command as an ordinary user's browser runs: without CAP_SYS_NICE. Run as root,
    Chromium raises its compositor, IO and presentation threads to nice -8, above the inspection (nice 0); a
    kiosk browser started by a user cannot. Empty when this process is not root (nothing to drop)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        raise RuntimeError("the browser as an ordinary user needs setpriv (util-linux) to drop CAP_SYS_NICE")
    return ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]


# -- the viewer process ------------------------------------------------------------------------------------------
def process_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, name, CPU ticks used by it and its reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            parts = rest.split()
            ticks = sum(int(x) for x in parts[11:15])  # utime, stime, cutime, cstime
            table[int(entry)] = (int(parts[1]), head.split("(", 1)[1], ticks)
        except (OSError, IndexError, ValueError):
            continue
    return table


POLICIES = {0: "normal", 1: "FIFO", 2: "RR", 3: "batch", 5: "idle", 6: "deadline"}


def scheduling(pid: int) -> str | None:
    """How the kernel schedules process ``pid``: "normal, nice 0", "idle, nice 19" ... (None once it is gone).
    Recorded with the timings: a helper that renices the machine's processes changes what they mean."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return f"{POLICIES.get(int(fields[38]), fields[38])}, nice {fields[16]}"
    except (OSError, IndexError, ValueError):
        return None


def tree(root: int) -> list[tuple[int, str]]:
    """``root`` and all its descendants: (pid, name)."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append((pid, table[pid][1]))
        todo.extend(children.get(pid, []))
    return found


def tree_ticks(root: int) -> tuple[int, int]:
    """CPU ticks so far of ``root`` and all its descendants, and of the Chromium processes among them."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total = browser = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            _, name, ticks = table[pid]
            total += ticks
            browser += ticks if "chrom" in name else 0
        todo.extend(children.get(pid, []))
    return total, browser


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def watch_browser(url: str, seconds: float, screenshot: Path | None) -> dict[str, Any]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # Not "load": before the run there is no frame yet, and an MJPEG <img> only loads with its first frame.
        page.goto(url, wait_until="domcontentloaded", timeout=90_000)
        page.wait_for_function("document.getElementById('source-state').className !== 'pill'", timeout=90_000)
        say({"open": True, "kind": BROWSER_KIND})
        (total0, browser0), t0 = tree_ticks(os.getpid()), time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        (total1, browser1), wall = tree_ticks(os.getpid()), time.monotonic() - t0
        seen = sorted({scheduling(pid) or "?" for pid, name in tree(os.getpid()) if "chrom" in name})
        if screenshot is not None:  # after the measured time: let the gallery's newest thumbnails arrive first
            with contextlib.suppress(PlaywrightError):
                page.wait_for_function(GALLERY_LOADED, timeout=3000)
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    tck = os.sysconf("SC_CLK_TCK")
    return {
        "kind": BROWSER_KIND,
        "seconds": round(wall, 2),
        "browser_cpu_percent": round(100 * (browser1 - browser0) / tck / wall, 1),
        "viewer_cpu_percent": round(100 * (total1 - total0) / tck / wall, 1),
        "scheduling": " / ".join(seen),
    }


def watch_http(url: str, seconds: float) -> dict[str, Any]:
    """What the page fetches: the stream, and the status and gallery polling (1 s, 2 s)."""
    urllib.request.urlopen(url + "api/status", timeout=10).read()
    say({"open": True, "kind": HTTP_KIND})
    cpu0, t0 = time.process_time(), time.monotonic()
    end = t0 + seconds

    def stream() -> None:
        with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
            while time.monotonic() < end and r.read(65536):
                pass

    threading.Thread(target=stream, daemon=True).start()
    k = 0
    while time.monotonic() < end:
        urllib.request.urlopen(url + "api/status", timeout=5).read()
        if k % 2 == 0:
            urllib.request.urlopen(url + "api/defects?limit=20", timeout=5).read()
        k += 1
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    wall = time.monotonic() - t0
    return {
        "kind": HTTP_KIND,
        "seconds": round(wall, 2),
        "browser_cpu_percent": None,
        "viewer_cpu_percent": round(100 * (time.process_time() - cpu0) / wall, 1),
        "scheduling": scheduling(os.getpid()),
    }


@click.command(
    cls=Command, help="Open the station page at URL for SECONDS in headless Chromium; print its CPU use as JSON."
)
@click.argument("url")
@click.argument("seconds", type=FiniteFloatRange(min=0.1))
@click.option("--screenshot", type=click.Path(path_type=Path, dir_okay=False), default=None, help="PNG at the end.")
@click.option("--http", "http", is_flag=True, help="An HTTP client doing what the page does instead of Chromium.")
@click.option("--nice", "nice", type=click.IntRange(0, 19), default=0, show_default=True, help="Lower priority.")
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, url: str, seconds: float, screenshot: Path | None, http: bool, nice: int) -> None:
    if nice:
        os.nice(nice)  # Chromium and playwright's driver inherit it
    url = url if url.endswith("/") else url + "/"
    browser = not http and browser_available()
    import urllib.error

    from edge_runtime.errors import SourceError

    advice = "is edge-infer --serve running there?"
    try:
        watched = watch_browser(url, seconds, screenshot) if browser else watch_http(url, seconds)
    except (urllib.error.URLError, ConnectionError) as exc:
        raise SourceError(f"{url}: cannot reach the station page ({getattr(exc, 'reason', exc)}); {advice}") from exc
    except Exception as exc:
        if not (type(exc).__module__.startswith("playwright") and "net::ERR_" in str(exc)):
            raise
        reason = "net::" + str(exc).split("net::", 1)[1].split()[0]  # Chromium's own: ERR_CONNECTION_REFUSED
        raise SourceError(f"{url}: cannot reach the station page ({reason}); {advice}") from exc
    if not http and not browser:  # it fell back without a word: the figures are an HTTP client's
        click.echo("warning: no Chromium with playwright here; an HTTP client did what the page does", err=True)
    say(watched | {"nice": nice})


if __name__ == "__main__":
    main()
