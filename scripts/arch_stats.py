"""Architecture counts of the ``modelctl`` package at one git revision, without a checkout.

    python -m scripts.arch_stats            # HEAD
    python -m scripts.arch_stats 8666986    # any revision git knows
    python -m scripts.arch_stats main --json

Prints: the number of modules (``.py`` files under ``modelctl/``, ``__init__.py`` and
``testing/`` included; how many sit at the top level), the largest module (lines), the
largest class and the largest function or method (lines from its ``def``/``class`` line to
its last line, docstring included, by :mod:`ast`; nested ones count on their own), and the
import edges between modelctl files: distinct (importer, imported) pairs of files, every
import counted (lazy ones inside functions and ``TYPE_CHECKING`` ones too), and those at
module level only.

``from modelctl.pkg import name`` is an edge to ``pkg/name.py`` when that module exists,
else to ``pkg/__init__.py`` (or ``pkg.py``); the parent packages' ``__init__`` that Python
also runs are not counted. Files are read with ``git ls-tree`` and ``git cat-file``, so
any revision can be measured from any worktree.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

PACKAGE = "modelctl"


@dataclass(frozen=True)
class Largest:
    name: str  # path, or path:Qualified.name
    lines: int


@dataclass(frozen=True)
class Stats:
    revision: str
    modules: int
    lines: int
    top_level_modules: int  # .py files directly in modelctl/
    subpackages: int  # folders of modelctl/ with an __init__.py
    largest_module: Largest
    largest_class: Largest
    largest_function: Largest
    import_edges: int  # every import, lazy and TYPE_CHECKING ones included
    import_edges_module_level: int


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], check=True, capture_output=True).stdout


def read_tree(rev: str, package: str = PACKAGE) -> dict[str, str]:
    """``{path: source}`` of every .py file under ``package/`` at ``rev``."""
    listing = git("ls-tree", "-r", "-z", rev, "--", f"{package}/").decode()
    entries = [e.split("\t", 1) for e in listing.split("\0") if e]
    paths = [path for meta, path in entries if path.endswith(".py") and meta.split()[1] == "blob"]
    request = "".join(f"{rev}:{p}\n" for p in paths).encode()
    out = subprocess.run(
        ["git", "cat-file", "--batch"], input=request, check=True, capture_output=True
    ).stdout
    sources: dict[str, str] = {}
    pos = 0
    for path in paths:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        start = header_end + 1
        sources[path] = out[start : start + size].decode()
        pos = start + size + 1  # the object, then a newline
    return sources


def module_name(path: str) -> str:
    """``modelctl/hub/source.py`` -> ``modelctl.hub.source``; a package is its __init__."""
    parts = PurePosixPath(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def definitions(tree: ast.AST, kinds: tuple[type[ast.AST], ...]) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every node of ``kinds``, nested ones included."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            name = getattr(child, "name", None)
            qualified = f"{prefix}{name}" if isinstance(name, str) else prefix
            if isinstance(child, kinds):
                end = child.end_lineno or child.lineno  # type: ignore[attr-defined]
                yield qualified, end - child.lineno + 1  # type: ignore[attr-defined]
            scope = isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            yield from walk(child, f"{qualified}." if scope else prefix)

    yield from walk(tree, "")


def imported_modules(
    tree: ast.AST, me: str, is_package: bool
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """(candidate dotted names, at module level) of every import, most specific first:
    ``from a import b`` is ``a.b`` if that is a module, else ``a``. Relative imports are
    resolved against ``me``."""
    top_level = {id(n) for n in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        outer = id(node) in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield (alias.name,), outer
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = me.split(".") if is_package else me.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                yield (f"{base}.{alias.name}", base), outer


def import_edges(sources: Mapping[str, str], trees: Mapping[str, ast.AST]) -> tuple[int, int]:
    """Distinct (file, file) import pairs inside the package: (all, module level only).
    The package ``__init__`` files a Python import also runs are not counted as edges."""
    files = {module_name(path): path for path in sources}
    every: set[tuple[str, str]] = set()
    outer: set[tuple[str, str]] = set()
    for path, tree in trees.items():
        me = module_name(path)
        for candidates, at_top in imported_modules(tree, me, path.endswith("__init__.py")):
            target = next((files[c] for c in candidates if c in files), None)
            if target is None or target == path:
                continue
            every.add((path, target))
            if at_top:
                outer.add((path, target))
    return len(every), len(outer)


def measure(rev: str) -> Stats:
    sources = read_tree(rev)
    trees = {path: ast.parse(src, filename=path) for path, src in sources.items()}
    line_counts = {path: len(src.splitlines()) for path, src in sources.items()}
    big_module = max(line_counts.items(), key=lambda kv: (kv[1], kv[0]))
    classes = [
        (f"{path}:{name}", n)
        for path, tree in trees.items()
        for name, n in definitions(tree, (ast.ClassDef,))
    ]
    functions = [
        (f"{path}:{name}", n)
        for path, tree in trees.items()
        for name, n in definitions(tree, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    every, outer = import_edges(sources, trees)
    commit = git("rev-parse", "--short", rev).decode().strip()
    return Stats(
        revision=f"{rev} ({commit})" if commit != rev else rev,
        modules=len(sources),
        lines=sum(line_counts.values()),
        top_level_modules=sum(1 for path in sources if path.count("/") == 1),
        subpackages=sum(
            1 for path in sources if path.endswith("/__init__.py") and path.count("/") == 2
        ),
        largest_module=Largest(*big_module),
        largest_class=Largest(*max(classes, key=lambda c: (c[1], c[0]))),
        largest_function=Largest(*max(functions, key=lambda f: (f[1], f[0]))),
        import_edges=every,
        import_edges_module_level=outer,
    )


def render(stats: Stats) -> str:
    return "\n".join(
        [
            f"revision:          {stats.revision}",
            f"modules:           {stats.modules} ({stats.lines} lines): "
            f"{stats.top_level_modules} top-level, the rest in {stats.subpackages} subpackages",
            f"largest module:    {stats.largest_module.name} ({stats.largest_module.lines} lines)",
            f"largest class:     {stats.largest_class.name} ({stats.largest_class.lines} lines)",
            f"largest function:  {stats.largest_function.name} "
            f"({stats.largest_function.lines} lines)",
            f"import edges:      {stats.import_edges} between modelctl files "
            f"({stats.import_edges_module_level} at module level)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("revision", nargs="?", default="HEAD", help="default: HEAD")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        stats = measure(args.revision)
    except subprocess.CalledProcessError as exc:
        print(f"arch_stats: git failed: {exc.stderr.decode().strip()}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(stats), indent=2) if args.json else render(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
