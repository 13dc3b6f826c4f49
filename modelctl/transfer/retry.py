"""One retry policy for every Hub request, metadata and downloads (pure, no I/O).

What is retried: a dropped or refused connection, a timeout, and the answers 408, 429,
500, 502, 503 and 504. How long to wait:

- the server says it: ``Retry-After`` (seconds or an HTTP date), or on a 429 the IETF
  ``RateLimit`` header the Hub sends (``"resolvers";r=0;t=<seconds to reset>``, 5-minute
  windows, often without ``Retry-After``), plus 1 s as huggingface_hub adds (``t`` is
  whole seconds). Such a wait is honoured up to :attr:`RetryPolicy.retry_after_max_s`
  (``MODELCTL_RETRY_WAIT_MAX``, default 300 s: one whole window), so one wait is enough.
- otherwise exponential backoff from :attr:`RetryPolicy.backoff_s` up to
  :attr:`RetryPolicy.backoff_max_s`.

When to give up is a budget of waiting, not a count of answers:

- the seconds waited since the operation last made progress (:attr:`RetryPolicy.budget_s`,
  ``MODELCTL_RETRY_BUDGET``, default 600 s: two of the Hub's windows). Progress is what
  the caller's ``progress`` mark says: for a sync, bytes received or files completed by
  any of its downloads, so a rate limit that a big sync meets again and again while its
  other files advance never ends it; a server that never lets up ends it once the budget
  is spent (the error says how long it waited, and why).
- failures the server gave no wait for (a dropped connection, a 503 without
  ``Retry-After``): :attr:`RetryPolicy.failures` in a row that bring nothing new end the
  operation, as huggingface_hub's ``http_backoff`` gives up after 5 tries: a dead server
  fails in seconds, not after the budget.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
# huggingface_hub's own pattern (utils/_http.py): `"<policy>";r=<remaining>;t=<reset s>`.
_RATELIMIT: Final = re.compile(
    r"\"(?P<name>\w+)\"\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)"
)
DEFAULT_WAIT_MAX_S: Final = 300.0  # the Hub's rate-limit window is 5 minutes
DEFAULT_BUDGET_S: Final = 600.0  # waiting without progress: two whole windows
RATELIMIT_MARGIN_S: Final = 1.0  # huggingface_hub waits t + 1 s ("rounding issues")


@dataclass(frozen=True)
class RetryPolicy:
    failures: int = 5  # consecutive failures without a server-asked wait (no new byte)
    backoff_s: float = 0.5  # doubled after each failure ...
    backoff_max_s: float = 8.0  # ... up to this
    retry_after_max_s: float = DEFAULT_WAIT_MAX_S  # a wait the server asks for, capped
    mismatches: int = 1  # a digest/size mismatch starts again from zero this many times
    budget_s: float = DEFAULT_BUDGET_S  # seconds of waiting without progress, in all


DEFAULT_POLICY: Final = RetryPolicy()


@dataclass(frozen=True)
class ServerWait:
    """A wait the server asked for, and the header that said it (for the user)."""

    seconds: float
    why: str  # e.g. 'RateLimit "resolvers" resets in 30 s'


def server_wait(status: int, retry_after: str | None, ratelimit: str | None) -> ServerWait | None:
    """What a retryable answer says about when to come back, if anything.

    On a 429, an exhausted ``RateLimit`` (``r=0``) wins, as in huggingface_hub; then
    ``Retry-After``.
    """
    if status == 429 and ratelimit:
        m = _RATELIMIT.search(ratelimit)
        if m and int(m["r"]) == 0:
            t = int(m["t"])
            why = f'rate limited: RateLimit "{m["name"]}" resets in {t} s'
            return ServerWait(t + RATELIMIT_MARGIN_S, why)
    seconds = parse_retry_after(retry_after)
    if seconds is not None:
        what = "rate limited" if status == 429 else f"HTTP {status}"
        return ServerWait(seconds, f"{what}: Retry-After {seconds:g} s")
    return None


def parse_retry_after(text: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    if not text:
        return None
    text = text.strip()
    if text.isascii() and text.isdigit():  # str.isdigit() is also true for "²"
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(float(when.timestamp()) - time.time(), 0.0)


class GaveUp:
    """Why a :class:`Backoff` gave up, for the error message."""

    def __init__(self, failures: int, waited_s: float, budget_s: float, by_budget: bool) -> None:
        self.failures = failures
        self.waited_s = waited_s
        self.budget_s = budget_s
        self.by_budget = by_budget  # the waiting budget is spent (else: failures in a row)

    def __str__(self) -> str:
        if self.by_budget:
            return (
                f"after {self.failures} attempts and {self.waited_s:.0f} s of waiting without "
                f"progress (the retry budget is {self.budget_s:g} s, MODELCTL_RETRY_BUDGET)"
            )
        return f"after {self.failures} attempts"


class Backoff:
    """The waits of one operation (one file, one piece, one metadata request): call
    :meth:`next` after each failed attempt; None means give up (:attr:`gave_up` says why).

    ``progress`` returns a mark that changes whenever the whole operation advances (a
    sync's bytes and completed files); a change refunds the waiting budget.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        progress: Callable[[], Hashable] | None = None,
    ) -> None:
        self.policy = policy
        self.failures = 0  # in a row, without progress
        self.untold = 0  # failures in a row without a wait the server asked for
        self.waited_s = 0.0  # asked for since the last progress
        self.gave_up: GaveUp | None = None
        self._progress = progress
        self._mark = progress() if progress is not None else None

    def progressed(self) -> None:
        """The last attempt brought something new: the count and the budget start again."""
        self.failures = 0
        self.untold = 0
        self.waited_s = 0.0

    def next(self, told: ServerWait | None) -> float | None:
        p = self.policy
        if self._progress is not None:
            mark = self._progress()
            if mark != self._mark:
                # Something else of this operation advanced (another file, other bytes):
                # the server is serving us, only not this request yet.
                self._mark = mark
                self.waited_s = 0.0
        self.failures += 1
        if told is None:
            self.untold += 1
            if self.untold >= p.failures:
                self.gave_up = GaveUp(self.failures, self.waited_s, p.budget_s, by_budget=False)
                return None
            wait = min(p.backoff_s * 2.0 ** (self.untold - 1), p.backoff_max_s)
        else:
            self.untold = 0  # the server is there and said when: not a dead one
            # Honoured as said for the first answers; past `failures` in a row, never
            # sooner than the backoff (a server saying "Retry-After: 0" forever would
            # otherwise be asked thousands of times within the budget).
            beyond = self.failures - p.failures
            floor = (
                min(p.backoff_s * 2.0 ** min(beyond - 1, 32), p.backoff_max_s) if beyond > 0 else 0
            )
            wait = min(max(told.seconds, floor, 0.0), p.retry_after_max_s)
        if self.waited_s + wait > p.budget_s:
            # The last wait would overrun the budget: wait what is left of it, once.
            wait = p.budget_s - self.waited_s
            if wait <= 0.0:
                self.gave_up = GaveUp(self.failures, self.waited_s, p.budget_s, by_budget=True)
                return None
        self.waited_s += wait
        return wait
