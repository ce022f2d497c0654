"""The package's layout holds: one contract, no import cycle, imports pointing one way.

The package's modules are read with :mod:`ast`, not imported, so function-local imports count too:

* the controller's task ids and XCom keys are spelt only in :mod:`backfill_controller.contract`;
  everywhere else they are the contract's names (``Task.PLAN``, ``XCom.ERROR``), so renaming a
  task renames it for the DAG, the page, cancel and the CLI at once;
* the import graph of the package has no cycle;
* ``domain/`` and the contract import nothing of ``worker/``, ``server/``, ``client/`` or ``cli/``;
  ``worker/`` (tasks and triggers) and ``server/`` (the api-server plugin) import nothing of each
  other; ``cli/`` imports neither.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import backfill_controller
from backfill_controller import contract
from backfill_controller.contract import Task, XCom

PACKAGE = "backfill_controller"
SOURCE = Path(backfill_controller.__file__).resolve().parent
CONTRACT = f"{PACKAGE}.contract"

#: Every word the controller's DAGs, tasks and XComs are looked up by.
TASK_IDS = frozenset(t.value for t in Task)
#: Keys built per segment (``segment_1``, ...), which an earlier controller pushed: none may be spelt.
SEGMENT_KEY = "segment_"
XCOM_KEYS = frozenset(k.value for k in XCom) | {SEGMENT_KEY}
DAG_IDS = frozenset({contract.CONTROLLER_DAG_ID, contract.CATCHUP_DAG_ID})
NAMES = TASK_IDS | XCOM_KEYS
#: Parameters and attributes through which Airflow is told a task id or an XCom key, or a DAG id.
NAMING = {"task_id", "task_ids", "key", "keys"}
DAG_NAMING = {"dag_id", "trigger_dag_id", "controller_dag_id"}
#: Names declared by the contract (DAG ids, run-id shapes, URL prefix, ...).
DECLARED = {name for name in vars(contract) if name.isupper()}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}
TREES: dict[str, ast.Module] = {
    name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()
}


# --- one spelling of every task id and XCom key ---------------------------------------------------


def _strings(node: ast.AST) -> Iterator[ast.Constant | ast.JoinedStr]:
    """The string literals of ``node``: itself, or the items of a tuple, list or set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) or isinstance(node, ast.JoinedStr):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for item in node.elts:
            yield from _strings(item)


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _spells_a_name(literal: ast.Constant | ast.JoinedStr) -> bool:
    """Whether a literal is a task id or XCom key (an f-string: one built from ``segment_``)."""
    if isinstance(literal, ast.Constant):
        return literal.value in NAMES
    first = literal.values[0] if literal.values else None
    return isinstance(first, ast.Constant) and str(first.value).startswith(SEGMENT_KEY)


#: A REST path that names a task and an XCom key: ``.../taskInstances/report/xcomEntries/return_value``.
_XCOM_PATH = re.compile(r"taskInstances/(?P<task>[^/{]+)(/xcomEntries/(?P<key>[^/{?]+))?")


def named_literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, literal)`` of each literal that names a controller task or XCom key (or one of the
    product's DAG ids) to Airflow.

    The rule: a literal equal to a task id or XCom key where Airflow expects one, that is as an
    argument named ``task_id(s)`` or ``key(s)``; as any argument of a call whose name has ``xcom``
    in it (``xcom_pull``, ``xcom_push``, ``plan_xcoms``, a client's ``xcom``); compared with, or in
    ``in_(...)`` of, something named ``task_id`` or ``key``; as the value of a constant named
    ``..._TASK_ID(S)`` or ``..._KEY(S)``; or inside a REST path to task instances or XCom entries.
    A DAG id likewise as an argument named ``dag_id``, ``trigger_dag_id`` or ``controller_dag_id``
    (a default value too), or compared with something so named. The same words are also fields of
    the report and of the conf (``report["error"]``, ``{"segment": k}``) and the name of the
    configuration section, which the rule leaves alone; docstrings are never looked at.
    """
    # Docstrings, also those of attributes: every string that stands alone as a statement.
    seen = {
        id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    for node in ast.walk(tree):
        suspects: list[ast.AST] = []
        dag_suspects: list[ast.AST] = []
        if isinstance(node, ast.Call):
            callee = _name_of(node.func)
            suspects += [k.value for k in node.keywords if k.arg in NAMING]
            dag_suspects += [k.value for k in node.keywords if k.arg in DAG_NAMING]
            if "xcom" in callee.lower():
                suspects += [*node.args, *(k.value for k in node.keywords)]
            if callee == "in_" and _name_of(getattr(node.func, "value", None) or node) in NAMING:
                suspects += node.args
        elif isinstance(node, ast.arguments):
            named = [*node.posonlyargs, *node.args][-len(node.defaults) :] if node.defaults else []
            pairs = [
                *zip(named, node.defaults, strict=True),
                *zip(node.kwonlyargs, node.kw_defaults, strict=True),
            ]
            dag_suspects += [
                default for arg, default in pairs if default is not None and arg.arg in DAG_NAMING
            ]
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_name_of(o) in NAMING for o in operands):
                suspects += operands
            if any(_name_of(o) in DAG_NAMING for o in operands):
                dag_suspects += operands
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(
                re.search(r"(TASK_IDS?|_KEYS?)$", _name_of(t)) for t in targets
            ):
                suspects.append(node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in seen:
            for match in _XCOM_PATH.finditer(node.value):
                if match["task"] in TASK_IDS or (match["key"] or "") in XCOM_KEYS:
                    yield node.lineno, node.value
        flagged = [
            literal for suspect in suspects for literal in _strings(suspect) if _spells_a_name(literal)
        ]
        flagged += [
            literal
            for suspect in dag_suspects
            for literal in _strings(suspect)
            if isinstance(literal, ast.Constant) and literal.value in DAG_IDS
        ]
        for literal in flagged:
            if id(literal) not in seen:
                seen.add(id(literal))
                yield literal.lineno, ast.unparse(literal)


@pytest.mark.parametrize(
    "code",
    [
        'ti.xcom_pull(task_ids="plan", key=XCom.PLANS)',
        'ti.xcom_push(key="error", value=message)',
        'ti.xcom_pull(task_ids=Task.PLAN, key=f"segment_{k}")',
        'api.xcom(dag_id, run_id, "report", XCom.RETURN_VALUE)',
        'select(XComModel.value).where(XComModel.key == "plans")',
        'select(TaskInstance.run_id).where(TaskInstance.task_id.in_(["report", "trigger"]))',
        'PLAN_TASK_ID = "plan"',
        '_ENDED_KEYS = ("request", XCom.ERROR)',
        'link = base + "/taskInstances/report/xcomEntries/return_value"',
        'api.trigger(dag_id="backfill_controller", run_id=run_id, conf=conf)',
        'def parse(conf, controller_dag_id="backfill_controller"): ...',
        'select(DagRun).where(DagRun.dag_id == "backfill_controller")',
    ],
    ids=[
        "task id",
        "key",
        "segment key",
        "client call",
        "comparison",
        "in_",
        "constant",
        "keys",
        "REST path",
        "DAG id",
        "DAG id by default",
        "DAG id compared",
    ],
)
def test_the_rule_finds_a_spelt_task_id_or_xcom_key(code: str) -> None:
    assert list(named_literals(ast.parse(code)))


@pytest.mark.parametrize(
    "code",
    [
        '"""Pushes ``error``; read at ``taskInstances/report/xcomEntries/return_value``."""',
        "ti.xcom_pull(task_ids=Task.PLAN, key=XCom.segment(k))",
        'why = report.get("error") or conf.get("request")',
        'continues = {"head_run_id": head, "segment": k}',
        'summary = {"error": facts.get(XCom.ERROR), "segments": len(parts)}',
        'PythonOperator(task_id="catch_up", python_callable=catch_up)',
        'SECTION = "backfill_controller"',
    ],
    ids=[
        "docstring",
        "contract names",
        "report fields",
        "conf fields",
        "answer fields",
        "another task",
        "config section",
    ],
)
def test_the_rule_leaves_other_uses_of_the_same_words_alone(code: str) -> None:
    assert not list(named_literals(ast.parse(code)))


def test_task_ids_and_xcom_keys_are_spelt_only_in_the_contract() -> None:
    spelt = [
        f"{MODULES[name].relative_to(SOURCE.parent)}:{line}: {literal}"
        for name, tree in TREES.items()
        if name != CONTRACT
        for line, literal in named_literals(tree)
    ]
    assert spelt == [], "use backfill_controller.contract's Task and XCom instead"


def test_the_contracts_names_are_declared_there_and_imported_from_there_only() -> None:
    found = []
    for name, tree in TREES.items():
        if name == CONTRACT:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [
                    f"{name}:{node.lineno} declares {_name_of(t)}" for t in targets if _name_of(t) in DECLARED
                ]
            elif isinstance(node, ast.ImportFrom) and node.module != CONTRACT:
                found += [
                    f"{name}:{node.lineno} imports {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name in DECLARED and (node.module or "").startswith(PACKAGE)
                ]
    assert found == []


# --- the import graph -----------------------------------------------------------------------------


def _resolve(module: str, name: str, level: int, importer: str) -> str:
    """The absolute dotted name of ``from <level dots><module> import <name>`` in ``importer``."""
    if not level:
        return module
    base = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{module}" if module else base


def _existing(dotted: str) -> str | None:
    """The package module ``dotted`` names, or the nearest package module above it."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def imports_of(name: str) -> set[str]:
    """Every package module ``name`` imports anywhere in its source (function-local imports too).

    ``from backfill_controller.x import y`` is an import of the module ``backfill_controller.x.y``
    when that is a module, else of ``backfill_controller.x``.
    """
    found: set[str] = set()
    for node in ast.walk(TREES[name]):
        wanted: list[str] = []
        if isinstance(node, ast.Import):
            wanted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", "", node.level, name)
            wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for dotted in wanted:
            if dotted == PACKAGE or dotted.startswith(PACKAGE + "."):
                module = _existing(dotted)
                if module is not None and module != name:
                    found.add(module)
    return found


GRAPH: dict[str, set[str]] = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each strongly connected group of modules, as one cycle
    through them (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(_cycle_through(sorted(group), graph))
    return groups


def _cycle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle from the first module of ``group`` back to it (breadth first, inside the group)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return group


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle() -> None:
    found = [" -> ".join(m.removeprefix(PACKAGE + ".") for m in cycle) for cycle in cycles(GRAPH)]
    assert found == []


def test_the_graph_sees_local_imports_and_resolves_imported_modules() -> None:
    # dags.py imports its operators inside controller_dag(); web.py imports modules by name.
    assert f"{PACKAGE}.worker.operators" in GRAPH[f"{PACKAGE}.dags"]
    assert {f"{PACKAGE}.server.front_door", f"{PACKAGE}.server.ui"} <= GRAPH[f"{PACKAGE}.server.web"]


# --- imports point one way ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]

    def broken(self) -> list[str]:
        return sorted(
            f"{module} imports {imported}"
            for module, imported_modules in GRAPH.items()
            if _within(module, self.importers)
            for imported in imported_modules
            if _within(imported, self.forbidden)
        )


def _within(module: str, parts: tuple[str, ...]) -> bool:
    return any(module == f"{PACKAGE}.{p}" or module.startswith(f"{PACKAGE}.{p}.") for p in parts)


RULES = {
    "the domain and the contract import no side of the product": Rule(
        ("domain", "contract"), ("worker", "server", "client", "cli")
    ),
    "the worker side imports nothing of the api-server side": Rule(("worker",), ("server",)),
    "the api-server side imports nothing of the worker side": Rule(("server",), ("worker",)),
    "the command line imports neither side": Rule(("cli",), ("worker", "server")),
}


@pytest.mark.parametrize("rule", list(RULES.values()), ids=list(RULES))
def test_imports_point_one_way(rule: Rule) -> None:
    assert rule.broken() == []


def test_the_contract_imports_nothing_but_the_standard_library() -> None:
    imported = set()
    for node in ast.walk(TREES[CONTRACT]):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").partition(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# --- the api-server reads the record, never the controller's XComs or task instances -------------

#: Airflow's XCom and task-instance models: a user who may edit XComs or mark tasks can change them.
_RUN_STATE_MODELS = {"airflow.models.xcom", "airflow.models.taskinstance"}
#: Where the api-server side may read task instances: the planner reads the *target's* (which of
#: its tasks ``task_regex`` and ``reprocess`` select), never the controller's.
_TARGET_TASKS_READER = f"{PACKAGE}.server.planner"


def _airflow_imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found & _RUN_STATE_MODELS


def test_the_api_server_side_reads_no_xcom_and_no_controller_task_instance() -> None:
    reading = {
        name: sorted(_airflow_imports(tree))
        for name, tree in TREES.items()
        if name.startswith(f"{PACKAGE}.server") and _airflow_imports(tree)
    }
    assert reading == {_TARGET_TASKS_READER: ["airflow.models.taskinstance"]}
    assert "Task." not in MODULES[_TARGET_TASKS_READER].read_text(encoding="utf-8")
