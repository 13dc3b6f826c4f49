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

Either way, :attr:`RetryPolicy.failures` attempts in a row that bring nothing new end
the operation, as huggingface_hub's ``http_backoff`` gives up after 5 tries.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Final

RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
# huggingface_hub's own pattern (utils/_http.py): `"<policy>";r=<remaining>;t=<reset s>`.
_RATELIMIT: Final = re.compile(
    r"\"(?P<name>\w+)\"\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)"
)
DEFAULT_WAIT_MAX_S: Final = 300.0  # the Hub's rate-limit window is 5 minutes
RATELIMIT_MARGIN_S: Final = 1.0  # huggingface_hub waits t + 1 s ("rounding issues")


@dataclass(frozen=True)
class RetryPolicy:
    failures: int = 5  # consecutive failed attempts (no new byte) before giving up
    backoff_s: float = 0.5  # doubled after each failure ...
    backoff_max_s: float = 8.0  # ... up to this
    retry_after_max_s: float = DEFAULT_WAIT_MAX_S  # a wait the server asks for, capped
    mismatches: int = 1  # a digest/size mismatch starts again from zero this many times


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


class Backoff:
    """The waits of one operation (one file, one metadata request): call :meth:`next` after
    each failed attempt; None means give up."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def progressed(self) -> None:
        """The last attempt brought something new: the count starts again."""
        self.failures = 0

    def next(self, told: ServerWait | None) -> float | None:
        p = self.policy
        self.failures += 1
        if self.failures >= p.failures:
            return None
        if told is not None:
            return min(max(told.seconds, 0.0), p.retry_after_max_s)
        return min(p.backoff_s * 2.0 ** (self.failures - 1), p.backoff_max_s)
