"""The structure of `service/` and `workers/`, read from the source with `ast`.

Three rules of the design hold here: no import circle among the project's modules
(counting imports inside functions too, since a circle held apart only by
where an import stands is still a circle), `service` never imports
`workers` (jobs are enqueued by dotted name), and no function is longer than
MAX_FUNCTION_LINES unless LONG_FUNCTIONS names it and says why.

Importing `a.b` also runs the package `a` first; that implicit edge is not
counted, which is sound because the packages' `__init__` modules import none of
their own modules (a blueprint is taken from its `routes.py`), except
`service/__init__.py`, whose `create_app` imports the app's parts when called.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "workers")
# From `def` to the last line, docstring included (decorators not counted).
MAX_FUNCTION_LINES = 60
# "path:function" -> why it may be longer (e.g. "a table read top to bottom"); none today.
LONG_FUNCTIONS: dict[str, str] = {}


def module_files() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its file, relative imports resolved.

    A dotted name counts as the longest project module it starts with (it may
    end in a class or function); `from package import submodule` counts as the
    submodule alone, since that is the code it needs.
    """

    def project_module(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(project_module(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` in a package's __init__ means the package
                # itself; in a module, the package that holds it.
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in modules else project_module(origin))
    found.discard(None)
    found.discard(module)
    return found  # type: ignore[return-value]


def import_graph() -> dict[str, set[str]]:
    """Each module of service/ and workers/ -> the project modules it imports."""
    files = module_files()
    return {
        module: imported_modules(
            module, path.read_text(encoding="utf-8"), path.name == "__init__.py", set(files)
        )
        for module, path in files.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    """A check of the checker, on a made-up module of a package."""
    modules = {"service", "service.a", "service.a.b", "service.a.c", "service.models", "workers"}
    source = (
        "from .c import helper\n"
        "from .. import models\n"
        "def job():\n"
        "    import workers\n"
        "    from service.a import c\n"
    )
    assert imported_modules("service.a.b", source, False, modules) == {
        "service.a.c",
        "service.models",
        "workers",
    }
    # In a package's __init__, `.` is the package itself.
    assert imported_modules("service.a", "from . import b", True, modules) == {"service.a.b"}
    assert circles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_no_import_circle_among_service_and_workers() -> None:
    assert circles(import_graph()) == []


def test_service_never_imports_workers() -> None:
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.split(".")[0] == "service"
        for target in targets
        if target.split(".")[0] == "workers"
    )
    assert offending == []


def long_functions(path: Path, source: str) -> dict[str, int]:
    """ "path:function" -> its length in lines, for each function longer than the limit."""
    where = path.relative_to(ROOT).as_posix()
    return {
        f"{where}:{node.name}": node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }


def test_the_length_check_counts_from_def_to_the_last_line() -> None:
    body = "".join(f"    x = {n}\n" for n in range(MAX_FUNCTION_LINES - 1))
    fits = f"@decorator\ndef fits():\n{body}"
    too_long = f"def too_long():\n{body}    return x\n"
    assert long_functions(ROOT / "service/x.py", fits) == {}
    assert long_functions(ROOT / "service/x.py", too_long) == {
        "service/x.py:too_long": MAX_FUNCTION_LINES + 1
    }


def test_no_function_is_longer_than_the_limit_unless_allowed() -> None:
    found: dict[str, int] = {}
    for path in module_files().values():
        found.update(long_functions(path, path.read_text(encoding="utf-8")))
    unexplained = {name: lines for name, lines in found.items() if name not in LONG_FUNCTIONS}
    assert unexplained == {}, (
        f"split these (or add them to LONG_FUNCTIONS saying why): {unexplained}"
    )


# --- no test may wait forever ----------------------------------------------------------

# Calls that block until something happens, each with the keyword that bounds the wait.
NEEDS_KEYWORD = {
    "run": "timeout",  # subprocess.run and its kin: a child that never exits
    "call": "timeout",
    "check_call": "timeout",
    "check_output": "timeout",
    "urlopen": "timeout",  # a server that accepts and never answers
    "SMTP": "timeout",
    "SMTP_SSL": "timeout",
    "create_connection": "timeout",
    "IMAPClient": "timeout",
    "work": "burst",  # an RQ worker without burst listens on its queues for good
    "Thread": "daemon",  # a stuck non-daemon thread keeps the test process from exiting
}
# Methods that block without end when called with no argument at all (Popen.wait,
# Thread.join, Event.wait, Barrier.wait, Lock.acquire, Queue.get, communicate).
NEED_AN_ARGUMENT = {"wait", "join", "acquire", "get", "communicate"}
SUBPROCESS_ONLY = {"run", "call", "check_call", "check_output"}


def unbounded_waits(path: Path, source: str) -> list[str]:
    """`path:line: call` for each blocking call in `source` that has no bound."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        name = getattr(function, "attr", None) or getattr(function, "id", None)
        owner = getattr(getattr(function, "value", None), "id", None)
        keywords = {keyword.arg for keyword in node.keywords}
        if name in SUBPROCESS_ONLY and owner != "subprocess":
            continue
        positional_timeout = name == "create_connection" and len(node.args) >= 2
        if name in NEEDS_KEYWORD and NEEDS_KEYWORD[name] not in keywords | (
            {"timeout"} if positional_timeout else set()
        ):
            found.append(f"{path}:{node.lineno}: {name}() without {NEEDS_KEYWORD[name]}=")
        elif (
            name in NEED_AN_ARGUMENT
            and isinstance(function, ast.Attribute)
            and not (node.args or node.keywords)
        ):
            found.append(f"{path}:{node.lineno}: .{name}() without a timeout")
    return found


def test_the_wait_check_finds_each_kind_of_endless_wait() -> None:
    source = (
        "subprocess.run(['x'])\nsubprocess.run(['x'], timeout=5)\nprocess.wait()\n"
        "process.wait(5)\nworker.work()\nworker.work(burst=True)\nthreading.Thread(target=f)\n"
        "socket.create_connection(('h', 1), 2)\nqueue.get()\nrun_jobs(app)\n"
    )
    assert [line.split(": ", 1)[1] for line in unbounded_waits(Path("t.py"), source)] == [
        "run() without timeout=",
        ".wait() without a timeout",
        "work() without burst=",
        "Thread() without daemon=",
        ".get() without a timeout",
    ]


def test_no_test_can_wait_forever() -> None:
    """A wait with no deadline hangs CI for its whole time budget instead of failing:
    every blocking call in tests/ is bounded (and tests/waiting.py polls with a deadline)."""
    found = [
        problem
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for problem in unbounded_waits(path.relative_to(ROOT), path.read_text())
    ]
    assert not found, "\n".join(found)
