"""The documentation builds: ``mkdocs build --strict`` (what ``just docs`` runs) with no
warning, so a broken link, a missing anchor, a page left out of the nav or an API
reference that does not resolve fails here; and the README's links point at real files.

Skipped only where mkdocs is not installed (the ``docs`` extra); ``.ci/run`` sets
``MODELCTL_REQUIRE_DOCS=1`` so CI fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# [text](target) outside code spans and fenced blocks; images too.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _need_mkdocs() -> None:
    missing = [
        m for m in ("mkdocs", "material", "mkdocstrings") if importlib.util.find_spec(m) is None
    ]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed: pip install -e '.[docs]' (just setup does)"
    if os.environ.get("MODELCTL_REQUIRE_DOCS") == "1":
        pytest.fail(f"the docs build is required (MODELCTL_REQUIRE_DOCS=1): {reason}")
    pytest.skip(reason)


def test_the_site_builds_strictly_without_a_warning(tmp_path: Path) -> None:
    _need_mkdocs()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    api = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("open_lock", "provision", "download_plan", "LocalHub", "IntegrityError"):
        assert name in api, f"the API reference lacks {name}"
    for role in (":func:", ":meth:", ":class:", ":mod:"):
        assert role not in api, f"a Sphinx role left as text in the API reference: {role}"


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The check above can fail: a copy of the docs with one broken anchor does not build."""
    _need_mkdocs()
    import shutil

    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "mkdocs_hooks.py", tmp_path / "scripts")
    with (tmp_path / "docs" / "demo.md").open("a", encoding="utf-8") as f:
        f.write("\nSee [the sync page](sync.md#no-such-section).\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "no-such-section" in done.stdout + done.stderr


def _links(markdown: str) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def test_every_relative_link_in_the_readme_names_a_file() -> None:
    readme = ROOT / "README.md"
    targets = [t for t in _links(readme.read_text(encoding="utf-8")) if "://" not in t]
    assert targets, "the README links to docs/"
    for target in targets:
        path = target.split("#", 1)[0]
        if path:
            assert (ROOT / path).exists(), f"README.md links to {target}: no such file"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        if page.name in ("index.md", "api.md"):
            continue
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
