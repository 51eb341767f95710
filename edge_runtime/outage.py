"""When a live source that dropped is back, and what it says when it drops or is given up.

A reopened source is back once it has kept sending for a while (:data:`STEADY_AFTER`), not at its first frame;
until then its reconnect attempts add up (:func:`lost_after` says why it is given up).
"""

from __future__ import annotations

from typing import Any

from edge_runtime.summary import plural

# What edge-infer asks of a reopened source before it is back, its reconnect attempts and wait starting afresh: 5
# pictures over 10 s. A camera that sent one frame, or the burst a server had buffered, then hung on every
# connection had each reopen count as a recovery, and --max-reconnects never ended the run. 10 s is longer than the
# capped wait between attempts (8 s): a source up for less is down more than up. 5 pictures: a frame or two before
# a hang is none, even where --read-timeout (a camera sending a frame per part) lets the hang last past 10 s.
STEADY_AFTER = (5, 10.0)


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


def lost_after(name: str, attempts: int, unsteady: int, steady_after: tuple[int, float]) -> str:
    """Why a source is given up; ``unsteady``: the attempts that brought pictures, then dropped again (a camera whose
    reopens each sent a frame and hung read as one that reconnected, stderr said so each time, yet was lost).

    >>> lost_after("cam", 2, 2, (5, 10.0))
    'cam: lost and not back after 2 reconnect attempts (2 of them brought frames, but it dropped again before it had been up 10 s and sent 5 frames)'
    """  # noqa: E501 - a doctest's output is one line
    said = f"{name}: lost and not back after {plural(attempts, 'reconnect attempt')}"
    if not unsteady:
        return said
    frames, seconds = steady_after
    return (f"{said} ({unsteady} of them brought frames, but it dropped again before it had been up {seconds:g} s "
            f"and sent {plural(frames, 'frame')})")  # fmt: skip
