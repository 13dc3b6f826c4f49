"""system_proxies() is urllib.request.getproxies(), read without importing urllib.request
when no *_proxy variable is set (Linux reads only those: issue 19's start-up)."""

from __future__ import annotations

import os
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.transfer.http import system_proxies

NAMES = [
    "http_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "ftp_proxy",
    "Http_Proxy",
]


@given(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["", "http://p:3128", "h1,h2"])))
def test_system_proxies_is_getproxies(proxies: dict[str, str]) -> None:
    saved = {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
    try:
        for k in saved:
            del os.environ[k]
        os.environ.update(proxies)
        assert system_proxies() == urllib.request.getproxies()
    finally:
        for k in list(os.environ):
            if k.lower().endswith("_proxy"):
                del os.environ[k]
        os.environ.update(saved)


def test_with_no_proxy_variable_it_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.lower().endswith("_proxy"):
            monkeypatch.delenv(k)
    assert system_proxies() == {} == urllib.request.getproxies()
