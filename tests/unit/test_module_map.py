"""The module map in docs/architecture.md is generated from the layering rules
(tests/unit/test_layering.py) and the units' docstrings: a stale map fails here."""

from __future__ import annotations

from pathlib import Path

from scripts import module_map


def test_the_committed_module_map_is_current() -> None:
    current = module_map.ARCHITECTURE.read_text(encoding="utf-8")
    assert module_map.splice(current, module_map.render()) == current, (
        "docs/architecture.md's module map is stale: run `python -m scripts.module_map`"
    )


def test_every_layering_unit_is_in_the_map() -> None:
    entries, _ = module_map.read_rules()
    block = module_map.render()
    for name, layer, _comment in entries:
        assert f"| {layer} | `{name}" in block, name


def _project(tmp_path: Path, extra: str) -> tuple[Path, Path]:
    """A small package and a layering test of its own, LAYERS with ``extra`` added."""
    pkg = tmp_path / "modelctl"
    (pkg / "fs").mkdir(parents=True, exist_ok=True)
    (pkg / "fs" / "__init__.py").write_text('"""Files on disk."""\n')
    (pkg / "fs" / "paths.py").write_text('"""Paths."""\n')
    (pkg / "errors.py").write_text('"""Every error.\n\nMore."""\n')
    (pkg / "newunit.py").write_text('"""A new unit, just added."""\n')
    rules = tmp_path / "test_layering.py"
    rules.write_text(
        "LAYERS: dict[str, int] = {\n"
        '    "errors": 0,\n'
        '    "fs": 1,  # files\n'
        f"{extra}"
        "}\n"
        "KNOWN_UPWARD: set[tuple[str, str]] = set()\n"
    )
    return rules, pkg


def test_a_change_to_the_rules_makes_the_committed_map_stale(tmp_path: Path) -> None:
    rules, pkg = _project(tmp_path, "")
    before = module_map.render(rules, pkg)
    doc = f"# A\n\n{module_map.BEGIN}\n{module_map.END}\n\ntail\n"
    committed = module_map.splice(doc, before)
    assert module_map.splice(committed, before) == committed  # idempotent

    rules, pkg = _project(tmp_path, '    "newunit": 2,\n')
    after = module_map.render(rules, pkg)
    assert "| 2 | `newunit` | A new unit, just added. |" in after
    assert "| 1 | `fs/` | Files on disk. | paths |" in after
    assert "| 0 | `errors` | Every error. |" in after
    assert module_map.splice(committed, after) != committed
    assert module_map.splice(committed, after).endswith("\n\ntail\n")
