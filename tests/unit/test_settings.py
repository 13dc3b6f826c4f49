"""Settings from the environment: the token from HF_TOKEN or the file HF_TOKEN_PATH names."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.errors import InputError
from modelctl.settings import from_env


def test_token_from_the_file_hf_token_path_names(tmp_path: Path) -> None:
    secret = tmp_path / "hf_token"
    secret.write_text("hf_abc\n")
    assert from_env({"HF_TOKEN_PATH": str(secret)}).token == "hf_abc"
    # HF_TOKEN wins, as in huggingface_hub.
    assert from_env({"HF_TOKEN": "hf_env", "HF_TOKEN_PATH": str(secret)}).token == "hf_env"
    assert "hf_abc" not in repr(from_env({"HF_TOKEN_PATH": str(secret)}))


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_missing_or_empty_token_file_means_no_token(tmp_path: Path, content: str | None) -> None:
    """A build secret that was not passed leaves no file: the build goes on without a token."""
    secret = tmp_path / "hf_token"
    if content is not None:
        secret.write_text(content)
    assert from_env({"HF_TOKEN_PATH": str(secret)}).token is None


def test_unreadable_token_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        from_env({"HF_TOKEN_PATH": str(tmp_path)})  # a folder
    assert str(tmp_path) in info.value.render()


def test_max_connections_from_the_environment() -> None:
    from modelctl.settings import DEFAULT_MAX_CONNECTIONS

    assert from_env({}).max_connections == DEFAULT_MAX_CONNECTIONS == 64
    assert from_env({"MODELCTL_MAX_CONNECTIONS": " 16 "}).max_connections == 16
    for bad in ("0", "-3", "lots", "1e3", "99999"):
        with pytest.raises(InputError, match="MODELCTL_MAX_CONNECTIONS"):
            from_env({"MODELCTL_MAX_CONNECTIONS": bad})
