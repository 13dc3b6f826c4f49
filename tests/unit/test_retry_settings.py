"""The retry policy's waits, the token's sources and the timeouts, as huggingface_hub has them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import HubResponseError, InputError
from modelctl.hub.client import HfHubClient
from modelctl.settings import from_env
from modelctl.transfer.http import Proxy, Timeouts, proxy_for
from modelctl.transfer.retry import Backoff, RetryPolicy, ServerWait, server_wait


def test_an_exhausted_ratelimit_is_waited_out_plus_a_second_as_huggingface_hub_does() -> None:
    told = server_wait(429, None, '"resolvers";r=0;t=37')
    assert told is not None and told.seconds == 38.0 and '"resolvers" resets in 37 s' in told.why
    # Calls left (r > 0): no wait from the header; Retry-After then decides.
    assert server_wait(429, None, '"api";r=5;t=37') is None
    assert server_wait(429, "3", '"api";r=5;t=37').seconds == 3.0  # type: ignore[union-attr]
    # RateLimit only means something on a 429.
    assert server_wait(503, "2", '"api";r=0;t=99').seconds == 2.0  # type: ignore[union-attr]
    assert server_wait(503, None, None) is None
    assert server_wait(429, "Wed, 21 Oct 2015 07:28:00 GMT", None).seconds == 0.0  # type: ignore[union-attr]


@given(st.text(max_size=40), st.text(max_size=40), st.sampled_from([408, 429, 500, 503]))
def test_any_header_gives_a_wait_or_none(retry_after: str, ratelimit: str, status: int) -> None:
    told = server_wait(status, retry_after, ratelimit)
    assert told is None or told.seconds >= 0.0


def test_backoff_doubles_honours_the_server_and_gives_up_after_the_failures() -> None:
    p = RetryPolicy(failures=5, backoff_s=0.5, backoff_max_s=3.0, retry_after_max_s=60.0)
    b = Backoff(p)
    assert [b.next(None) for _ in range(3)] == [0.5, 1.0, 2.0]
    b.progressed()
    big = server_wait(429, None, '"resolvers";r=0;t=299')
    assert b.next(big) == 60.0  # capped (MODELCTL_RETRY_WAIT_MAX)
    # A wait the server asked for does not count toward the failures without one.
    assert [b.next(None) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, None]
    assert b.gave_up is not None and not b.gave_up.by_budget
    assert str(b.gave_up) == "after 6 attempts"


def test_a_rate_limit_is_budgeted_by_time_waited_not_by_answers() -> None:
    """Issue 24: six 429s saying "wait 5 s" gave up after ~24 s with a fixed count."""
    p = RetryPolicy(budget_s=100.0)
    b = Backoff(p)
    told = server_wait(429, None, '"api";r=0;t=5')
    waits = []
    while (wait := b.next(told)) is not None:
        waits.append(wait)
    # 9 answers honoured as said, then never sooner than the backoff (8 s at most), and
    # the last wait is what is left of the budget: far more than a fixed count allowed.
    assert waits == [6.0] * 9 + [8.0] * 5 + [6.0]
    assert b.gave_up is not None and b.gave_up.by_budget
    assert "16 attempts and 100 s of waiting without progress" in str(b.gave_up)
    assert "MODELCTL_RETRY_BUDGET" in str(b.gave_up)


@given(
    st.lists(st.tuples(st.floats(0, 50), st.booleans(), st.booleans()), min_size=1, max_size=60),
    st.floats(1, 200),
)
def test_the_budget_counts_only_waits_since_the_operation_last_advanced(
    steps: list[tuple[float, bool, bool]], budget: float
) -> None:
    """Whatever the answers: no wait beyond the budget since the last progress; giving up
    only once the budget is spent (told waits) or after `failures` untold ones in a row."""
    mark = [0]
    b = Backoff(RetryPolicy(budget_s=budget, retry_after_max_s=30.0), lambda: mark[0])
    since = 0.0
    untold = 0
    for seconds, told_one, advanced in steps:
        if advanced:
            mark[0] += 1
            since = 0.0
        told = ServerWait(seconds, "test") if told_one else None
        untold = 0 if told_one else untold + 1
        wait = b.next(told)
        if wait is None:
            assert b.gave_up is not None
            if b.gave_up.by_budget:
                assert since >= budget - 1e-9
            else:
                assert untold >= 5
            return
        assert wait >= 0.0
        since += wait
        assert since <= budget + 1e-9


def test_the_token_is_found_where_get_token_looks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "token").write_text("  hf_Stored\n")
    env = {"HF_HOME": str(home)}
    s = from_env(env)
    assert (s.token, s.token_source) == ("hf_Stored", f"the token file {home / 'token'}")
    other = tmp_path / "elsewhere"
    other.write_text("hf_Path\r\n")
    assert from_env(env | {"HF_TOKEN_PATH": str(other)}).token == "hf_Path"
    assert from_env(env | {"HUGGING_FACE_HUB_TOKEN": "hf_Old"}).token == "hf_Old"
    assert from_env(env | {"HF_TOKEN": "hf_Env", "HUGGING_FACE_HUB_TOKEN": "x"}).token == "hf_Env"
    assert from_env({"HF_HOME": str(tmp_path / "none")}).token is None
    (home / "token").write_text("\n")
    assert from_env(env).token is None
    assert "hf_Secret" not in repr(from_env(env | {"HF_TOKEN": "hf_Secret"}))


def test_timeouts_come_from_huggingface_hub_s_variables() -> None:
    s = from_env({})
    assert (s.download_timeout_s, s.metadata_timeout_s) == (10.0, 10.0)  # its defaults
    s = from_env({"HF_HUB_DOWNLOAD_TIMEOUT": "120", "HF_HUB_ETAG_TIMEOUT": "45"})
    assert (s.download_timeout_s, s.metadata_timeout_s) == (120.0, 45.0)
    # ... and the headers may take as long in total (settings.Limits.headers_s, 60 s).
    assert Timeouts.for_download(120.0) == Timeouts(connect_s=120.0, read_s=120.0, headers_s=120.0)
    assert Timeouts.for_download(10.0) == Timeouts(connect_s=10.0, read_s=60.0)
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(InputError, match="HF_HUB_DOWNLOAD_TIMEOUT"):
            from_env({"HF_HUB_DOWNLOAD_TIMEOUT": bad})
    assert from_env({"MODELCTL_RETRY_WAIT_MAX": "30"}).retry_wait_max_s == 30.0


def test_proxies_as_urllib_reads_them() -> None:
    proxies = {"https": "http://u:p%40ss@proxy:3128", "no": "localhost,.internal"}
    assert proxy_for(("https", "hub.example", 443), proxies) == proxies["https"]
    assert proxy_for(("https", "localhost", 443), proxies) is None
    assert proxy_for(("https", "cdn.internal", 443), proxies) is None
    assert proxy_for(("http", "hub.example", 80), proxies) is None
    assert proxy_for(("http", "hub.example", 80), {"all": "http://p:1"}) == "http://p:1"
    proxy = Proxy.parse(proxies["https"])
    assert proxy is not None and (proxy.host, proxy.port) == ("proxy", 3128)
    assert proxy.authorization == "Basic dTpwQHNz"  # u:p@ss
    assert Proxy.parse("socks5://proxy:1080") is None
    assert Proxy.parse("proxy:8080") == Proxy("proxy", 8080, None)


def test_a_next_page_on_another_origin_is_refused() -> None:
    """The token would follow the link: the listing must stay on the endpoint."""
    client = HfHubClient("https://hub.example")
    assert client._next_page("https://hub.example/api/x?cursor=1", "o/r@main")
    with pytest.raises(HubResponseError, match="links to another server"):
        client._next_page("https://evil.example/api/x?cursor=1", "o/r@main")
    with pytest.raises(HubResponseError):
        client._next_page("http://hub.example/api/x?cursor=1", "o/r@main")


def test_a_server_saying_retry_after_zero_forever_is_asked_ever_more_slowly() -> None:
    b = Backoff(RetryPolicy())
    zero = server_wait(503, "0", None)
    assert [b.next(zero) for _ in range(9)] == [0.0] * 5 + [0.5, 1.0, 2.0, 4.0]
    assert b.next(zero) == 8.0 == b.next(zero)  # backoff_max_s: the budget ends it
