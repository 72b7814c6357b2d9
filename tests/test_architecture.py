"""The layout's rules, checked on the source (docs/architecture.md explains them).

Every import between iptvsync's rooms points down the layers, modules form no cycle (lazy,
function-level imports included), only ``panels/`` names a panel kind, and only
``ledger/queue.py`` spells a queue status.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from iptvsync.ledger.queue import InboxStatus, MailStatus, SyncStatus
from iptvsync.notify.registry import NAMES as GATEWAY_NAMES
from iptvsync.panels.registry import KINDS

PACKAGE = Path(__file__).resolve().parent.parent / "iptvsync"

#: room -> layer; an import may go to a lower layer, or sideways between rooms of one layer
#: (those room-to-room arrows must not form a cycle)
LAYERS = {
    "cli": 6, "__main__": 6, "admin": 6,
    "ops": 5,
    "engine": 4, "receiver": 4,
    "ledger": 3, "mail": 3, "monetizze": 3,
    "config": 2,
    "panels": 1, "notify": 1,
    "clock": 0, "errors": 0, "fsutil": 0, "timeparse": 0, "credentials": 0, "logsafe": 0, "__init__": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text("utf-8"))) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, tree: ast.Module) -> set[str]:
    """Every iptvsync module this one imports, anywhere in it (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("iptvsync")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("iptvsync"):
                continue
            for alias in node.names:  # `from . import inbox` imports a module
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


MODULES: set[str] = set()
MODULES |= set(sources())
GRAPH = {name: imports(name, path, tree) for name, (path, tree) in sources().items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_layer():
    assert {room(m) for m in MODULES} <= set(LAYERS), "add the new room to LAYERS and docs/architecture.md"


def test_imports_point_down_the_layers():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
              if LAYERS[room(a)] < LAYERS[room(b)]]
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules_or_rooms():
    assert _cycles(GRAPH) == []
    rooms: dict[str, set[str]] = {}
    for a, targets in GRAPH.items():
        rooms.setdefault(room(a), set()).update(room(b) for b in targets if room(b) != room(a))
    assert _cycles(rooms) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _strings(tree: ast.Module):
    """String constants that are not docstrings nor the values of enum members."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith("Enum") for b in node.bases):
            skip |= {id(n) for stmt in node.body if isinstance(stmt, ast.Assign) for n in ast.walk(stmt.value)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


KIND_WORD = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, KINDS)) + r")(?![\w-])")


def test_no_module_outside_panels_names_a_panel_kind():
    named = [f"{name}:{node.lineno} {node.value!r}" for name, (_, tree) in sources().items()
             if room(name) != "panels" for node in _strings(tree) if KIND_WORD.search(node.value)]
    assert named == []


STATUSES = {str(s) for enum in (InboxStatus, SyncStatus, MailStatus) for s in enum}
SQL_STATUS = re.compile(r"'(" + "|".join(sorted(STATUSES)) + r")'")
#: where a status word means something else: the postback kind of a non-payment event, and the
#: `reconcile monetizze --json` field counting sales of unmapped products (an output contract)
OTHER_MEANINGS = {("iptvsync.monetizze.postback", "ignored"), ("iptvsync.ops.reconcile", "unmapped"),
                  ("iptvsync.cli.process", "skipped"),  # process --json: {"skipped": "locked"}, a run skipped
                  ("iptvsync.receiver.head", "pending")}  # ssl.SSLSocket.pending(): bytes a TLS session holds


EXEMPT = ("iptvsync.ledger.queue", "iptvsync.ledger.migrations")  # the vocabulary; shipped migrations


def test_queue_statuses_are_spelled_only_in_the_queue_module():
    assert set(EXEMPT) <= MODULES
    found = []
    for name, (_, tree) in sources().items():
        if name in EXEMPT:
            continue
        for node in _strings(tree):
            if (node.value in STATUSES and (name, node.value) not in OTHER_MEANINGS) or SQL_STATUS.search(node.value):
                found.append(f"{name}:{node.lineno} {node.value!r}")
    assert found == []


GATEWAY_WORD = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, GATEWAY_NAMES)) + r")(?![\w-])")


def test_no_module_outside_notify_names_a_whatsapp_gateway():
    named = [f"{name}:{node.lineno} {node.value!r}" for name, (_, tree) in sources().items()
             if room(name) != "notify" for node in _strings(tree) if GATEWAY_WORD.search(node.value)]
    assert named == []
def test_the_admin_console_calls_ops_only():
    """The console sits beside ``cli/`` and reaches the ledger, the engine and everything else
    through ``ops/`` (plus the clock, the typed errors and the config it is handed)."""
    allowed_rooms = {"admin", "ops", "clock", "errors", "config"}
    reached = {f"{a} -> {b}" for a, targets in GRAPH.items() if room(a) == "admin" for b in targets
               if room(b) not in allowed_rooms}
    assert not reached, sorted(reached)
