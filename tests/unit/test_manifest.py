from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.errors import EXIT_INPUT, ManifestError
from modelctl.lock.manifest import load_manifest, parse_manifest
from modelctl.lock.types import ROLE_MODEL, ROLE_TOKENIZER, ROLE_VOICE, FileRequest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generic_form_defaults() -> None:
    m = parse_manifest("assets:\n  stt:\n    repo: org/whisper\n    files: [model.bin, '*.json']\n")
    (a,) = m.assets
    assert a.kind == "files" and a.enabled
    (src,) = a.sources
    assert (src.repo_id, src.repo_type, src.revision) == ("org/whisper", "model", "main")
    assert [r.pattern for r in src.requests] == ["model.bin", "*.json"]
    assert [r.is_glob for r in src.requests] == [False, True]


def test_stt_preset_defaults_to_the_ctranslate2_whisper_folder() -> None:
    m = parse_manifest("assets:\n  stt:\n    kind: stt\n    repo: Systran/faster-whisper-tiny.en\n")
    (src,) = m.assets[0].sources
    assert [r.pattern for r in src.requests] == [
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    explicit = parse_manifest(
        "assets:\n  stt:\n    kind: stt\n    repo: org/w\n"
        "    files: [model.bin, config.json, tokenizer.json, vocabulary.json, "
        "preprocessor_config.json]\n"
    )
    assert len(explicit.assets[0].sources[0].requests) == 5
    with pytest.raises(ManifestError, match="files"):
        parse_manifest("assets:\n  x:\n    repo: org/w\n")  # kind: files still needs files


def test_gguf_preset_with_tokenizer_repo() -> None:
    m = parse_manifest(
        """
assets:
  llm:
    kind: gguf
    repo: org/llm-GGUF
    revision: v1
    file: llm-q4.gguf
    tokenizer:
      repo: org/llm
"""
    )
    (a,) = m.assets
    model, tok = a.sources
    assert (model.repo_id, model.revision) == ("org/llm-GGUF", "v1")
    assert [(r.pattern, r.role) for r in model.requests] == [("llm-q4.gguf", ROLE_MODEL)]
    assert tok.repo_id == "org/llm" and tok.revision == "main"
    assert [(r.pattern, r.role) for r in tok.requests] == [
        ("tokenizer.json", ROLE_TOKENIZER),
        ("tokenizer_config.json", ROLE_TOKENIZER),
    ]


@pytest.mark.parametrize("tokenizer", ["", "\n    tokenizer: null", "\n    tokenizer: {repo: ''}"])
def test_gguf_without_tokenizer_downloads_no_tokenizer(tokenizer: str) -> None:
    m = parse_manifest(
        f"assets:\n  llm:\n    kind: gguf\n    repo: o/g\n    file: m.gguf{tokenizer}\n"
    )
    (src,) = m.assets[0].sources
    assert [r.pattern for r in src.requests] == ["m.gguf"]


def test_gguf_tokenizer_in_same_repo_merges_into_one_source() -> None:
    m = parse_manifest(
        "assets:\n  llm:\n    kind: gguf\n    repo: o/g\n    file: m.gguf\n"
        "    tokenizer: {repo: o/g, files: [tokenizer.json]}\n"
    )
    (src,) = m.assets[0].sources
    assert [(r.pattern, r.role) for r in src.requests] == [
        ("m.gguf", ROLE_MODEL),
        ("tokenizer.json", ROLE_TOKENIZER),
    ]


@pytest.mark.parametrize(
    ("variant", "onnx"),
    [
        ("fp32", "onnx/model.onnx"),
        ("q8f16", "onnx/model_q8f16.onnx"),
        (None, "onnx/model_quantized.onnx"),
    ],
)
def test_kokoro_preset_layout(variant: str | None, onnx: str) -> None:
    v = f"\n    variant: {variant}" if variant else ""
    m = parse_manifest(f"assets:\n  tts:\n    kind: kokoro{v}\n    voices: [af_heart, af_bella]\n")
    (src,) = m.assets[0].sources
    assert src.repo_id == "onnx-community/Kokoro-82M-v1.0-ONNX"
    assert [(r.pattern, r.role) for r in src.requests] == [
        (onnx, ROLE_MODEL),
        ("tokenizer.json", ROLE_TOKENIZER),
        ("voices/af_heart.bin", ROLE_VOICE),
        ("voices/af_bella.bin", ROLE_VOICE),
    ]


def test_api_and_disabled_assets_declare_no_files() -> None:
    m = parse_manifest(
        "assets:\n  remote:\n    kind: api\n    provider: fish\n"
        "  disabled:\n    repo: o/r\n    files: [a]\n    enabled: false\n"
    )
    assert [a.declares_files for a in m.assets] == [False, False]


def test_asset_order_does_not_change_the_manifest_hash() -> None:
    a = "  a:\n    repo: o/a\n    files: [x]\n"
    b = "  b:\n    repo: o/b\n    files: [y]\n"
    assert (
        parse_manifest("assets:\n" + a + b).manifest_hash()
        == parse_manifest("assets:\n" + b + a).manifest_hash()
    )


def test_comments_and_descriptions_do_not_change_the_hash() -> None:
    plain = parse_manifest("assets:\n  a:\n    repo: o/a\n    files: [x]\n")
    noted = parse_manifest(
        "# hi\nassets:\n  a:\n    repo: o/a  # the repo\n    files: [x]\n    description: d\n"
    )
    assert plain.manifest_hash() == noted.manifest_hash()


def _error(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    assert info.value.exit_code == EXIT_INPUT
    return info.value


def test_yaml_syntax_error_has_line_and_column() -> None:
    err = _error("assets:\n  a:\n    repo: [unclosed\n")
    assert err.where is not None and err.where.startswith("m.yaml:")
    line = int(err.where.split(":")[1])
    assert line >= 3
    assert "YAML syntax error" in err.message


def test_unknown_key_is_rejected_with_its_location() -> None:
    err = _error("assets:\n  a:\n    repo: o/a\n    files: [x]\n    flies: [y]\n")
    assert "flies" in err.message and "unknown keys" in err.message
    assert err.where == "m.yaml:5:5"  # the bad key itself


def test_wrong_type_names_the_field_path_and_expectation() -> None:
    err = _error("assets:\n  a:\n    repo: o/a\n    files: model.bin\n")
    assert "assets.a.files" in err.message
    assert "expected array" in err.message
    assert err.where == "m.yaml:4:12"


def test_missing_required_field() -> None:
    err = _error("assets:\n  llm:\n    kind: gguf\n    repo: o/g\n")
    assert "'file' is a required property" in err.message


def test_unknown_kind_is_named() -> None:
    err = _error("assets:\n  x:\n    kind: whisper\n    repo: o/a\n")
    assert "whisper" in err.message


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs", "a\\\\b", "a/../b", "./a", "a//b"])
def test_unsafe_paths_are_refused(path: str) -> None:
    err = _error(f'assets:\n  a:\n    repo: o/a\n    files: ["{path}"]\n')
    assert "assets.a.files[0]" in err.message


def test_keys_read_as_booleans_are_refused() -> None:
    err = _error("assets:\n  off:\n    repo: o/a\n    files: [x]\n")
    assert "'off'" in err.message and "quote it" in err.message
    assert err.where == "m.yaml:2:3"


def test_duplicate_keys_are_refused() -> None:
    err = _error("assets:\n  a:\n    repo: o/a\n    repo: o/b\n    files: [x]\n")
    assert "duplicate key" in err.message
    assert err.where == "m.yaml:4:5"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "[]\n", "assets: []\n", "42\n"])
def test_empty_or_wrong_top_level(text: str) -> None:
    _error(text)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.yaml")


def test_bundled_manifests_are_valid() -> None:
    manifests = sorted((REPO_ROOT / "manifests").glob("*.yaml"))
    assert manifests, "manifests/ must hold the examples"
    for path in manifests:
        assert load_manifest(path).assets


def test_signature_is_a_locked_file_and_part_of_the_spec() -> None:
    plain = parse_manifest("assets:\n  m:\n    repo: o/m\n    files: ['*']\n")
    signed = parse_manifest(
        "assets:\n  m:\n    repo: o/m\n    files: ['*']\n    signature:\n      key: k.pub\n"
    )
    asset = signed.assets[0]
    assert asset.signature is not None and asset.signature.method == "key"
    assert asset.signature.path == "model.sig"
    # First, so that its role wins over the glob that also matches it.
    assert asset.sources[0].requests[0] == FileRequest("model.sig", "signature")
    assert asset.spec_hash() != plain.assets[0].spec_hash()
    # An unsigned asset's spec has no signature key: locks made before keep their hash.
    assert "signature" not in plain.assets[0].spec()


@pytest.mark.parametrize(
    ("block", "method"),
    [
        ("key: k.pub", "key"),
        ("certificate_chain: [ca.pem]", "certificate"),
        ("identity: a@b.c\n      issuer: https://accounts.google.com", "sigstore"),
        ("path: sig/model.sig\n      key: k.pub", "key"),
    ],
)
def test_each_way_to_trust_a_signature(block: str, method: str) -> None:
    head = "assets:\n  m:\n    kind: gguf\n    repo: o/m\n    file: a.gguf\n"
    text = f"{head}    signature:\n      {block}\n"
    sig = parse_manifest(text).assets[0].signature
    assert sig is not None and sig.method == method


@pytest.mark.parametrize(
    "block",
    [
        "{}",  # no way to trust it
        "{key: k.pub, identity: a@b.c, issuer: https://x}",  # two ways
        "{identity: a@b.c}",  # identity without issuer
        "{key: k.pub, path: '*.sig'}",  # a glob is no path
        "{key: k.pub, path: ../model.sig}",
        "{key: k.pub, extra: 1}",
    ],
)
def test_bad_signature_blocks_are_refused(block: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(f"assets:\n  m:\n    repo: o/m\n    files: [a]\n    signature: {block}\n")
