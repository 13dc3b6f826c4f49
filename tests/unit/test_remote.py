"""The Remotes the transfer engine is given: the Hub's URLs and refusals, a registry's."""

from __future__ import annotations

import dataclasses

import huggingface_hub as hf
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import AuthError, ResolveError
from modelctl.hub.source import HUB_HINTS, HubRemote
from modelctl.lock.types import FileRef
from modelctl.transfer.remote import Hints, plain_refusal
from tests.support.strategies import file_refs

# What the Hub accepts as a repo id (huggingface_hub validates it in hf_hub_url).
hub_repo_ids = st.from_regex(
    r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})?/[A-Za-z0-9]{1,8}([._][A-Za-z0-9]{1,8})?", fullmatch=True
)
endpoints = st.sampled_from(
    ["https://huggingface.co", "http://127.0.0.1:8080", "https://mirror.example/hf"]
)


@given(file_refs, hub_repo_ids, st.sampled_from(["model", "dataset", "space"]), endpoints)
def test_hub_urls_are_huggingface_hubs(
    ref: FileRef, repo_id: str, kind: str, endpoint: str
) -> None:
    ref = ref._replace(repo_type=kind, repo_id=repo_id)  # type: ignore[arg-type]
    want = hf.hf_hub_url(
        ref.repo_id, ref.path, repo_type=kind, revision=ref.commit, endpoint=endpoint
    )
    assert HubRemote(endpoint, None).url(ref) == want


class _Headers(dict[str, str]):
    pass


@given(file_refs)
def test_hub_refusals_read_its_error_codes(ref: FileRef) -> None:
    hub = HubRemote("https://huggingface.co", "hf_secret")
    missing = hub.refused(404, _Headers(), "here", ref)
    assert isinstance(missing, ResolveError) and missing.hint == HUB_HINTS.missing
    gated = hub.refused(403, _Headers({"X-Error-Code": "GatedRepo"}), "here", ref)
    assert isinstance(gated, AuthError) and "gated" in gated.message
    assert hub.secrets == ("hf_secret",) and HubRemote("x", None).secrets == ()
    assert hub.headers()["authorization"] == "Bearer hf_secret"


@dataclasses.dataclass(frozen=True)
class _Plain:
    name: str = "the mirror"
    hints: Hints = dataclasses.field(
        default_factory=lambda: Hints(
            auth="log in", missing="push it", mismatch="m", rate_limited="r"
        )
    )


@given(st.sampled_from([401, 403, 404]))
def test_a_plain_refusal_names_the_server_and_its_hint(status: int) -> None:
    err = plain_refusal(_Plain(), status, "here")  # type: ignore[arg-type]
    assert err.message.startswith("the mirror ")
    assert err.hint == ("push it" if status == 404 else "log in")
    assert isinstance(err, ResolveError if status == 404 else AuthError)
