"""The import graph of ``cpppo/`` and ``fleet/``, read with ``ast`` (nothing is imported):
no module imports another that imports it back (directly or round a longer loop, module-level
or inside a function), and nothing inside the packages imports the spec's re-export modules
in ``cpppo/server/enip/`` (they exist for users' import paths and ``python -m``)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cpppo", "fleet")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: the spec's example programs, printed whole in the spec: they import as users do
EXAMPLES = {f"cpppo.server.enip.{name}" for name in
            ("poll_example", "poll_example_many", "poll_test", "powerflex_motor_velocity",
             "list_identity_simple", "thruput", "ab", "io", "historize")}
#: the spec's import paths: every other module of cpppo/server/enip/ (the package itself, its
#: ``__main__``, ``client``, ``get_attribute``, ``poll``, ...), kept for users' import paths
REEXPORTS = {module_name(p) for p in (ROOT / "cpppo/server/enip").rglob("*.py")} - EXAMPLES


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source (not under TYPE_CHECKING);
    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
            for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_loops() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_import_resolution(tmp_path: Path) -> None:
    known = {"cpppo.x.a": tmp_path / "a.py", "cpppo.x.b": tmp_path / "b.py", "cpppo.x": tmp_path}
    source = ("from cpppo.x import b\nimport cpppo.x.a\nfrom . import b as c\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cpppo.x import a\n"
              "def f():\n    from .b import thing\n")
    (tmp_path / "a.py").write_text(source)
    assert imports("cpppo.x.a", tmp_path / "a.py", known) == {"cpppo.x.b"}


def test_no_import_cycles_in_cpppo() -> None:
    loops = [c for c in cycles(graph()) if all(m.startswith("cpppo") for m in c)]
    assert loops == []


def test_no_import_cycles_in_fleet() -> None:
    loops = [c for c in cycles(graph()) if not all(m.startswith("cpppo") for m in c)]
    assert loops == [], f"fleet/ import cycles: {loops}"


def test_nothing_imports_the_spec_reexports() -> None:
    edges = graph()
    assert {"cpppo.server.enip", "cpppo.server.enip.client", "cpppo.server.enip.poll",
            "cpppo.server.enip.enip_format", "cpppo.server.enip.__main__"} <= REEXPORTS
    users = {name: sorted(targets & REEXPORTS) for name, targets in edges.items()
             if targets & REEXPORTS and name not in REEXPORTS | EXAMPLES}
    assert users == {}


def test_no_skip_hides_an_import_error() -> None:
    """Our modules and the [test] dependencies import or fail: no ``importorskip`` anywhere
    (a test that needs a machine's program, chromium or mbpoll, skips naming it instead)."""
    called = [f"{path.relative_to(ROOT)}:{node.lineno}"
              for path in sorted([*(ROOT / "tests").rglob("*.py"), *modules().values()])
              for node in ast.walk(ast.parse(path.read_text(), str(path)))
              if isinstance(node, ast.Attribute) and node.attr == "importorskip"]
    assert called == []


def test_only_the_codecs_pack_bytes() -> None:
    """No CIP body is packed by hand: ``struct`` is imported in ``cpppo/enip/codec/`` only (of
    the EtherNet/IP code, the servers' shared ``cpppo/server/`` and ``fleet/``), so clients and
    servers build and read every message with the one codec's records."""
    packers = sorted(name for name, path in modules().items()
                     if name.startswith(("cpppo.enip.", "cpppo.server.", "fleet."))
                     and not name.startswith("cpppo.enip.codec")
                     and "struct" in imports_of(path))
    assert packers == []


def imports_of(path: Path) -> set[str]:
    """The top-level module names ``path`` imports (any depth in its source)."""
    tree = ast.parse(path.read_text(), str(path))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return names | {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}
