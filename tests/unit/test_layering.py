"""Imports go one way (cli -> locking/sync/bundle -> fetch/partial/presence -> store/hub/http
-> plan/lockfile/... -> types -> errors), no two modules import each other (not even lazily),
the runtime never imports what reaches the network (and a real import of it loads none),
and no module reads the environment at import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "modelctl"

# Lower number = lower layer. A unit is a subpackage (fs, lock, store, ...) or a top-level
# module. A unit may import only units of a lower layer; inside a subpackage its modules
# import each other freely (the cycle check below still applies to them).
LAYERS: dict[str, int] = {
    "errors": 0,
    "_version": 0,
    "values": 0,  # data classes without importing dataclasses (start-up time)
    "fs": 1,  # checked opens, paths, atomic writes, file locks
    "lock": 2,  # manifest, lockfile, schema check, plan math: pure data
    "provenance": 3,  # OpenSSF Model Signing: signatures checked against the lock
    "settings": 2,
    "parallel": 2,
    "progress": 3,
    "store": 4,  # what is on disk, and the one writer of synced bytes
    "project": 5,  # which manifest, lock and mode: never the network (the runtime uses it)
    "sync": 5,  # the skeleton: knows Sources only by their protocol
    "transfer": 6,  # URLs and bytes, no Hub
    "runtime": 6,  # checked on its own below: never anything that reaches the network
    "hub": 7,
    "bundle": 7,
    "oci": 8,
    "outdated": 8,
    "locking": 8,
    "change": 9,
    "provisioning": 10,  # the in-process API: locking + sync + runtime
    "cli": 11,
    "__init__": 12,  # the public API, lazily: may name anything
    "__main__": 12,
}
# The runtime loader hands out paths: it must not reach the network in any way.
RUNTIME_FORBIDDEN = {
    "hub",
    "transfer",
    "sync",
    "bundle",
    "oci",
    "locking",
    "change",
    "outdated",
    "provisioning",
    "cli",
    "huggingface_hub",
    "httpx",
    "httpx2",
    "requests",
    "urllib.request",
}


# Imports that still run up a floor, each to be removed (a test below fails once one is gone
# from the code but still listed here).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "testing" not in p.parts)


def top(path: Path) -> str:
    """The unit a file belongs to: its subpackage, or itself at the top level."""
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def unit(name: str) -> str | None:
    """The unit an imported dotted name belongs to (None: not modelctl)."""
    parts = name.split(".")
    if parts[0] != "modelctl" or len(parts) == 1:
        # bare `modelctl` (from `from modelctl import x`): the names imported are checked
        return None
    return parts[1]


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module.split(".")[0] == "modelctl":
                # `from modelctl.lock import lockfile` imports the module modelctl.lock.lockfile
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_go_one_way(path: Path) -> None:
    me = top(path)
    assert me in LAYERS, f"{path.relative_to(PKG)}: add {me} to LAYERS"
    for name in imported(path):
        other = unit(name)
        if other is None or other == me:
            continue
        assert other in LAYERS, f"{path.name} imports unknown unit {name}: add it to LAYERS"
        if (str(path.relative_to(PKG)), name) in KNOWN_UPWARD:
            continue
        assert LAYERS[other] < LAYERS[me], (
            f"{path.relative_to(PKG)} ({me}, layer {LAYERS[me]}) imports {name} "
            f"({other}, layer {LAYERS[other]})"
        )


def test_known_upward_imports_still_exist() -> None:
    for file, name in KNOWN_UPWARD:
        assert name in imported(PKG / file), f"{file} no longer imports {name}: unlist it"


def test_runtime_never_imports_the_hub() -> None:
    runtime = [p for p in modules() if top(p) == "runtime"]
    seen: set[str] = set()
    for path in runtime:
        for name in imported(path):
            parts = name.split(".")
            key = parts[1] if parts[0] == "modelctl" and len(parts) > 1 else name
            seen.add(key)
            assert key not in RUNTIME_FORBIDDEN, f"{path.name} imports {name}"


def _module_level_env_reads(tree: ast.Module) -> list[int]:
    lines = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_environment_read_or_print_at_import(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert _module_level_env_reads(tree) == [], f"{path.name} reads the environment at import"
    if "cli" in path.relative_to(PKG).parts or path.name == "__main__.py":
        return
    prints = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    # The test servers' command lines print the URL they listen on.
    allowed = path.name in ("hub.py", "proxy.py") and "testing" in path.parts
    assert allowed or prints == [], f"print() in library code: {path.name}:{prints}"


def test_import_modelctl_is_cheap_and_provision_is_lazy() -> None:
    """``import modelctl`` loads no HTTP client; ``modelctl.provision`` brings it on first use."""
    import subprocess
    import sys

    code = (
        "import sys, modelctl\n"
        "heavy = ('huggingface_hub', 'httpx2', 'modelctl.sync', 'modelctl.transfer.fetch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from modelctl.provisioning import download_plan, provision\n"
        "assert modelctl.provision is provision and modelctl.download_plan is download_plan\n"
        "print('modelctl.sync' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    ).stdout.split()
    assert out == ["[]", "True"]


# Inside the runtime package: the model helpers are leaves, the loader uses them.
RUNTIME_LAYERS: dict[str, int] = {"kokoro": 0, "whisper": 0, "loader": 1, "__init__": 2}


def dotted(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if top(p) == "runtime"],
    ids=lambda p: str(p.relative_to(PKG)),
)
def test_runtime_modules_import_only_below_them(path: Path) -> None:
    me = path.stem
    assert me in RUNTIME_LAYERS, f"runtime/{path.name}: add it to RUNTIME_LAYERS"
    for name in imported(path):
        parts = name.split(".")
        if parts[:2] == ["modelctl", "runtime"] and len(parts) > 2:
            assert RUNTIME_LAYERS[parts[2]] < RUNTIME_LAYERS[me], f"runtime/{me} imports {name}"
        elif parts[0] == "modelctl" and len(parts) > 1 and parts[1] != "runtime":
            assert LAYERS[parts[1]] < LAYERS["runtime"], f"runtime/{me} imports {name}"


def test_no_import_cycles() -> None:
    """Not even through lazy or TYPE_CHECKING imports, and the package itself counts: two
    modules that need each other are one module, or a third one is missing."""
    graph: dict[str, set[str]] = {}
    names = {dotted(p) for p in modules()}
    for path in modules():
        me = dotted(path)
        graph[me] = {n for n in imported(path) if n in names and n != me}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_loading_through_the_runtime_loads_no_http_client(tmp_path: Path) -> None:
    """A real process: open a lock and ask for a path; nothing that can reach the network
    (huggingface_hub, httpx2, modelctl's Hub or HTTP modules) is imported."""
    import subprocess
    import sys

    from tests.support.helpers import lock_text

    (tmp_path / "modelctl.lock").write_text(lock_text())
    code = (
        "import sys\n"
        "from modelctl.runtime import open_lock\n"
        "models = open_lock(verify='none', env={'MODELCTL_TARGET': sys.argv[1]})\n"
        "models.path('a', 'x.bin')\n"
        "heavy = ('huggingface_hub', 'httpx2', 'httpx', 'requests', 'modelctl.hub.client',\n"
        "         'modelctl.transfer.http', 'modelctl.transfer.fetch', 'modelctl.sync',\n"
        "         'modelctl.locking')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PKG.parent)},
    ).stdout.split()
    assert out == ["[]"]


# The transfer engine deals in URLs and bytes: a Remote says where and how to word things.
TRANSFER_FORBIDDEN = ("huggingface_hub", "modelctl.hub", "modelctl.oci", "modelctl.bundle")


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if top(p) == "transfer"],
    ids=lambda p: str(p.relative_to(PKG)),
)
def test_transfer_knows_no_hub(path: Path) -> None:
    for name in imported(path):
        assert not name.startswith(TRANSFER_FORBIDDEN), f"transfer/{path.name} imports {name}"
