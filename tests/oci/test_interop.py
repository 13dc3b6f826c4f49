"""Tools nobody here wrote read what `modelctl push` wrote: skopeo and the oras Python SDK."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.runtime import open_lock
from tests.oci.conftest import LOCKED_FILES, requires_registry
from tests.support.servers import registry as reg

pytestmark = requires_registry
EXPECTED_TREE = {
    "alpha/weights.safetensors": ("org/alpha", "weights.safetensors"),
    "alpha/config.json": ("org/alpha", "config.json"),
    "alpha/notes/a.txt": ("org/alpha", "notes/a.txt"),
    "beta/model.gguf": ("org/beta", "model.gguf"),
    "beta/shared.json": ("org/beta", "shared.json"),
    "gamma/config.json": ("org/alpha", "config.json"),
}


@pytest.fixture
def pushed(
    project: Path, registry: reg.Registry, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str]:
    """(reference without scheme, manifest digest) of the pushed project."""
    ref = f"{registry.address}/team/models:v1"
    assert main(["push", f"oci://{ref}", "-m", str(project)]) == 0
    out = capsys.readouterr().out.strip()
    return ref, out.rsplit("@", 1)[1]


@pytest.mark.skipif(
    shutil.which("skopeo") is None and not os.environ.get("CI"),
    reason="needs skopeo (apt-get install skopeo; .ci/run installs it)",
)
def test_skopeo_reads_the_manifest_and_copies_the_layers(
    pushed: tuple[str, str], repos: dict[str, dict[str, bytes]], tmp_path: Path
) -> None:
    ref, digest = pushed
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{ref}",
         f"oci:{layout}:v1"],
        check=True, capture_output=True,
    )  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    assert manifest_digest == digest  # copied as is, not converted
    manifest = json.loads(_blob(layout, manifest_digest))
    titles = {
        layer["annotations"]["org.opencontainers.image.title"]: layer["digest"]
        for layer in manifest["layers"]
    }
    for path, (repo, name) in EXPECTED_TREE.items():
        data = repos[repo][name]
        assert titles[path] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert _blob(layout, titles[path]) == data


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_oras_pulls_a_tree_modelctl_runtime_opens(
    pushed: tuple[str, str], project: Path, repos: dict[str, dict[str, bytes]], tmp_path: Path
) -> None:
    oras_client = pytest.importorskip("oras.client")
    ref, _ = pushed
    out = tmp_path / "pulled"
    client = oras_client.OrasClient(hostname=ref.split("/")[0], insecure=True)
    files = client.pull(target=ref, outdir=str(out))
    assert len(files) == LOCKED_FILES + 1
    for path, (repo, name) in EXPECTED_TREE.items():
        assert (out / path).read_bytes() == repos[repo][name]
    # The lockfile comes along: the pulled folder is a --target tree the runtime opens.
    assert (out / "modelctl.lock").read_bytes() == lockfile.lock_path_for(project).read_bytes()
    models = open_lock(out / "modelctl.lock", target=out, verify="full")
    assert models.path("beta", "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]
