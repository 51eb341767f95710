"""The web view's answers to identical history queries, kept a second: made once, sent to all who ask.

A history answer (``/api/inspections?limit=1000``, 480 KB of JSON) took 40-80 ms of the view's CPU to make; 300
clients asking the same thing made it 300 times, while the view, a niced process, had little CPU to spare for the
page's own polls. Within :data:`KEEP_S` the same query gets the same bytes; the log gains at most a second of
records meanwhile, which the next poll (``after_id=``) picks up.

>>> cache = AnswerCache()
>>> cache.get("limit=1000", lambda: b'{"items": []}')
b'{"items": []}'
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

KEEP_S = 1.0
MAX_ANSWERS = 8  # distinct queries kept at once (480 KB each at most)


class AnswerCache:
    """Bytes by query, for :data:`KEEP_S`; safe to use from the view's worker threads."""

    def __init__(self, *, keep_s: float | None = None, max_answers: int = MAX_ANSWERS) -> None:
        self.keep_s, self.max_answers = KEEP_S if keep_s is None else keep_s, max_answers
        self.answers: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str, make: Callable[[], bytes]) -> bytes:
        """The answer kept for ``key`` if it is fresh, else ``make()`` (outside the lock), kept for the next."""
        now = time.monotonic()
        with self.lock:
            kept = self.answers.get(key)
            if kept is not None and now - kept[0] < self.keep_s:
                return kept[1]
        body = make()
        with self.lock:
            self.answers[key] = (now, body)
            self.answers.move_to_end(key)
            while len(self.answers) > self.max_answers:
                self.answers.popitem(last=False)
        return body
