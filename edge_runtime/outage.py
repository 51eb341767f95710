"""When a live source that dropped is back, what it says while it is down, and how often.

A reopened source is back once it has kept sending for a while (:data:`STEADY_AFTER`), not at its first frame;
until then its reconnect attempts add up (:func:`lost_after` says why it is given up).

A camera off the network for a weekend printed two lines at every reopen attempt, every 8 s once the wait between
attempts had reached its cap: thousands of lines that buried everything else in the log. :class:`OutageNews` tells
every drop, attempt and failure while the wait still doubles, says so once the wait reaches its cap, and from then
on folds them into one line every ``every_s`` seconds (a minute), with the count of attempts, how long the source
has been down and the last failure. The source's return is said once.

>>> said, now = [], [0.0]
>>> news = OutageNews("cam", said.append, clock=lambda: now[0])
>>> news.dropped("cam: source dropped after 9 frames; reconnecting", 0)
>>> for attempt, delay in enumerate([0.5, 1, 2, 4] + [8] * 10, 1):  # 14 attempts that fail, 12 lines
...     news.attempt(attempt, delay, 8.0, more=True)
...     now[0] += delay
...     news.failed("cam: nothing listens at 10.0.0.5:554", attempt)
>>> for line in said[-4:]:
...     print(line)
cam: nothing listens at 10.0.0.5:554
cam: reconnect attempt 5 in 8.0 s (from now on every 8 s, told once a minute)
cam: nothing listens at 10.0.0.5:554
cam: still down after 13 reconnect attempts, 80 s (nothing listens at 10.0.0.5:554)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge_runtime.summary import plural

# What edge-infer asks of a reopened source before it is back, its reconnect attempts and wait starting afresh: 5
# pictures over 10 s. A camera that sent one frame, or the burst a server had buffered, then hung on every
# connection had each reopen count as a recovery, and --max-reconnects never ended the run. 10 s is longer than the
# capped wait between attempts (8 s): a source up for less is down more than up. 5 pictures: a frame or two before
# a hang is none, even where --read-timeout (a camera sending a frame per part) lets the hang last past 10 s.
STEADY_AFTER = (5, 10.0)


def span(seconds: float) -> str:
    """A duration as a person reads it in a log.

    >>> span(42.4), span(600), span(3 * 3600 + 5 * 60)
    ('42 s', '10 min', '3 h 05 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class OutageNews:
    """The messages of one live source's outages, thinned out once the wait between attempts is at its cap.

    Called from the source's capture thread only. An outage starts at a drop (:meth:`dropped`) and ends when the
    source is steady again (:meth:`steady`); a reopen that brings a picture and drops again is part of it.
    """

    def __init__(
        self,
        name: str,
        say: Callable[[str], None],
        *,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.say, self.every_s, self.clock = name, say, every_s, clock
        self.since: float | None = None  # when the outage began
        self.quiet = False  # the wait is at its cap, told once: news is folded into a line every every_s
        self._capped = False  # an attempt at the capped wait has been told
        self._said_at = 0.0
        self._back = 0  # the attempt whose picture came while quiet: told once the source is steady
        self.last: str | None = None  # why the source is down now, as the last failure said it (name left out)

    def _tell(self, message: str) -> None:
        self._said_at = self.clock()
        self.say(message)

    def dropped(self, message: str, attempts: int) -> None:
        """The source dropped (the first drop of an outage, or a reopened source that dropped again)."""
        if self.since is None:
            self.since = self.clock()
        self.failed(message, attempts)

    def attempt(self, attempt: int, delay: float, cap: float, *, more: bool) -> None:
        """Reconnect attempt ``attempt`` in ``delay`` s; ``more``: others may follow if it fails."""
        capped = delay >= cap
        self.quiet = capped and self._capped  # the wait stopped changing: the reader knows the pattern
        if self.quiet:
            return
        note = ""
        if capped and more:  # the last line of its kind for a while: say why the log goes quiet
            told = "once a minute" if self.every_s == 60 else f"every {self.every_s:g} s"
            note = f" (from now on every {cap:g} s, told {told})"
        self._capped = self._capped or capped
        self._tell(f"{self.name}: reconnect attempt {attempt} in {delay:.1f} s{note}")

    def failed(self, message: str, attempts: int) -> None:
        """Why the source is down now (a drop, a failed reopen); while quiet, the line of the minute says it."""
        now = self.clock()
        self.last = message.removeprefix(f"{self.name}: ").removesuffix("; reconnecting")
        if not self.quiet:
            self._tell(message)
        elif now - self._said_at >= self.every_s:
            down = span(now - (self.since if self.since is not None else now))
            self._tell(f"{self.name}: still down after {plural(attempts, 'reconnect attempt')}, {down} ({self.last})")

    def note(self, message: str) -> None:
        """News that is no failure (a reopen waiting for its first frame): told unless quiet."""
        if not self.quiet:
            self._tell(message)

    def reconnected(self, attempt: int, was: tuple[int, ...] = (), now: tuple[int, ...] = ()) -> None:
        """A reopened source sent its first picture, ``now`` (height, width) where it was ``was`` before the drop:
        a camera that came back at another size (reset to its defaults by a reboot, its stream changed) had been
        judged on with nothing said; the size the model sees, and a part's place in the frame, differ now.

        >>> OutageNews("cam", print).reconnected(3, (240, 320), (1080, 1920))
        cam: reconnected (attempt 3); its pictures are 1920x1080 now, 320x240 before it dropped: check the camera's settings
        """  # noqa: E501 - a doctest's output is one line
        if was and now and was != now:  # told even while quiet: news about every verdict after it
            self._tell(f"{self.name}: reconnected (attempt {attempt}); its pictures are {now[1]}x{now[0]} now, "
                       f"{was[1]}x{was[0]} before it dropped: check the camera's settings")  # fmt: skip
        elif not self.quiet:
            self._tell(f"{self.name}: reconnected (attempt {attempt})")
        if self.quiet:
            self._back = attempt  # it may drop again at once (a camera that hangs after each restart)

    def steady(self) -> None:
        """The reopened source has stayed up: the outage is over, and said so once where it was not yet."""
        if self.quiet and self.since is not None:
            self._tell(f"{self.name}: reconnected (attempt {self._back}), after {span(self.clock() - self.since)} down")
        self.since, self.quiet, self._capped, self._back, self.last = None, False, False, 0, None


def why_dropped(cap: Any, waited: float, read_timeout_s: float | None) -> str:
    """Why a read failed, where it shows: frames that came but were no pictures (a broken encoder: the drop had read
    as the camera gone while it was still sending), or a read that waited out the read timeout (the stream sent
    nothing, as a camera triggered by the parts does between parts; nothing had named the option)."""
    run, most = getattr(cap, "undecodable_run", 0), getattr(cap, "max_undecodable_run", None)
    if isinstance(run, int) and isinstance(most, int) and run >= most:
        return f" ({plural(run, 'undecodable frame')} in a row: the camera sends data, but no pictures)"
    if read_timeout_s is None or waited < 0.9 * read_timeout_s:
        return ""
    return (f" (it sent nothing for {read_timeout_s:g} s; a camera that sends a frame per part needs --read-timeout "
            "above its longest gap)")  # fmt: skip


def lost_after(
    name: str, attempts: int, unsteady: int, steady_after: tuple[int, float], last: str | None = None
) -> str:
    """Why a source is given up; ``unsteady``: the attempts that brought pictures, then dropped again (a camera whose
    reopens each sent a frame and hung read as one that reconnected, stderr said so each time, yet was lost);
    ``last``: why the last attempt failed (the line had ended at the count, the camera's refusal left in the log).

    >>> lost_after("cam", 2, 2, (5, 10.0))
    'cam: lost and not back after 2 reconnect attempts (2 of them brought frames, but it dropped again before it had been up 10 s and sent 5 frames)'
    >>> lost_after("cam", 3, 0, (5, 10.0), "the camera refused the stream: RTSP 404 Not Found (...)")
    'cam: lost and not back after 3 reconnect attempts; the last one: the camera refused the stream: RTSP 404 Not Found (...)'
    >>> lost_after("cam", 0, 0, (5, 10.0))
    'cam: lost, and not reopened: reconnecting is off (--max-reconnects 0)'
    """  # noqa: E501 - a doctest's output is one line
    if not attempts:  # "lost and not back after 0 reconnect attempts" read as if reopening had failed
        return f"{name}: lost, and not reopened: reconnecting is off (--max-reconnects 0)"
    said = f"{name}: lost and not back after {plural(attempts, 'reconnect attempt')}"
    if unsteady:
        frames, seconds = steady_after
        said += (f" ({unsteady} of them brought frames, but it dropped again before it had been up {seconds:g} s "
                 f"and sent {plural(frames, 'frame')})")  # fmt: skip
    return f"{said}; the last one: {last}" if last else said
