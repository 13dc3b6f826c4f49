"""Property tests of the DownloadPlan math (pure: cache status is passed in)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelctl.lock.plan import make_plan, plan_lock
from modelctl.lock.types import FileRef, Lock
from tests.support.strategies import file_refs, locks

ref_lists = st.lists(
    file_refs, max_size=12, unique_by=lambda r: (r.asset, r.repo_type, r.repo_id, r.commit, r.path)
)


@st.composite
def refs_and_cached(draw: st.DrawFn) -> tuple[list[FileRef], list[FileRef]]:
    refs = draw(ref_lists)
    cached = [r for r in refs if draw(st.booleans())]
    return refs, cached


@given(refs_and_cached())
def test_totals_are_the_sums(args: tuple[list[FileRef], list[FileRef]]) -> None:
    refs, cached = args
    plan = make_plan(refs, cached)
    assert plan.total_bytes == sum(r.size or 0 for r in refs)
    assert plan.cached_bytes == sum(r.size or 0 for r in cached)
    assert plan.unknown_sizes == sum(1 for r in refs if r.size is None)
    assert len(plan.files) == len(refs)


@given(refs_and_cached())
def test_cached_never_exceeds_total_and_download_is_the_rest(
    args: tuple[list[FileRef], list[FileRef]],
) -> None:
    plan = make_plan(*args)
    assert 0 <= plan.cached_bytes <= plan.total_bytes
    assert plan.download_bytes() == plan.total_bytes - plan.cached_bytes
    assert plan.download_bytes() == sum(f.size_bytes or 0 for f in plan.to_download())


@given(refs_and_cached())
def test_needs_download_iff_some_file_is_not_cached(
    args: tuple[list[FileRef], list[FileRef]],
) -> None:
    refs, cached = args
    plan = make_plan(refs, cached)
    assert plan.needs_download() == (set(refs) != set(cached))


@given(refs_and_cached(), st.randoms(use_true_random=False))
def test_input_order_never_matters(args: tuple[list[FileRef], list[FileRef]], rnd: object) -> None:
    refs, cached = args
    shuffled = list(refs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert make_plan(shuffled, reversed(cached)) == make_plan(refs, cached)


@given(ref_lists)
def test_after_everything_is_cached_the_plan_is_empty(refs: list[FileRef]) -> None:
    plan = make_plan(refs, refs)
    assert not plan.needs_download()
    assert plan.download_bytes() == 0
    assert plan.cached_bytes == plan.total_bytes


@given(st.lists(file_refs.map(lambda r: r._replace(size=None)), max_size=5))
def test_unknown_sizes_never_break_the_math(refs: list[FileRef]) -> None:
    plan = make_plan(refs)
    assert plan.total_bytes == 0 and plan.download_bytes() == 0
    assert plan.unknown_sizes == len(set(refs))
    assert plan.needs_download() == bool(refs)


@given(refs_and_cached())
def test_json_has_exactly_the_documented_keys(args: tuple[list[FileRef], list[FileRef]]) -> None:
    doc = make_plan(*args).to_json()
    assert set(doc) == {"files", "total_bytes", "cached_bytes", "download_bytes"}
    for f in doc["files"]:
        assert set(f) == {
            "asset",
            "repo_id",
            "revision",
            "filename",
            "size_bytes",
            "digest",
            "cached",
        }


@given(locks())
def test_disabled_assets_have_no_files_in_the_plan(lock: Lock) -> None:
    plan = plan_lock(lock)
    disabled = {a.name for a in lock.assets if not a.enabled}
    assert not {f.asset for f in plan.files} & disabled
