"""Bytecode for optimised workers (service/bytecode.py; the worker's systemd unit and image).

Each check runs in a fresh interpreter with the environment a deployment gives it:
PYTHONOPTIMIZE=2, PYTHONPYCACHEPREFIX for the unit's cache directory, and
PYTHONDONTWRITEBYTECODE=1 standing in for a read-only installation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service import bytecode
from service.paths import PROJECT_ROOT
from tests.test_process_footprint import service_env

MODULE = '''"""A docstring that an optimised interpreter drops."""

def answer():
    """So is this one."""
    assert False, "asserts are dropped too"
    return 42
'''
# Imports the package, then says what was compiled from source and what the module holds.
PROBE = """
import json, sys
import pkg.mod
from service.bytecode import compiled_from_source
print(json.dumps({
    "from_source": [m for m in compiled_from_source() if m.split(".")[0] == "pkg"],
    "doc": pkg.mod.__doc__, "answer": pkg.mod.answer(), "optimize": sys.flags.optimize,
}))
"""


def make_package(tmp_path: Path, **extra: str) -> Path:
    """`pkg` with `mod` (MODULE) and any other modules given, under tmp_path/code."""
    package = tmp_path / "code" / "pkg"
    package.mkdir(parents=True)
    for name, text in {"__init__": "", "mod": MODULE, **extra}.items():
        (package / f"{name}.py").write_text(text)
    return package


def compile_folder(package: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.bytecode", str(package)], env=env, cwd=package.parent,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def optimised_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(
        PYTHONOPTIMIZE="2", PYTHONDONTWRITEBYTECODE="1",
        PYTHONPYCACHEPREFIX=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join([str(tmp_path / "code"), str(PROJECT_ROOT)]),
    )  # fmt: skip
    env.update(extra)
    return env


def probe(env: dict[str, str], cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compiling_a_folder_gives_the_optimised_bytecode_in_the_cache_prefix(tmp_path):
    package = make_package(tmp_path)
    env = optimised_env(tmp_path)

    before = probe(env, tmp_path)
    # Nothing can be written, so every start compiles the modules again.
    assert before == {"from_source": ["pkg", "pkg.mod"], "doc": None, "answer": 42, "optimize": 2}
    assert not (tmp_path / "cache").exists()

    result = compile_folder(package, env)
    assert result.returncode == 0, result.stderr
    assert f"level 2 is up to date in {tmp_path / 'cache'}" in result.stdout
    # The bytecode is in the prefix, not beside the sources (a read-only installation).
    assert list((tmp_path / "cache").rglob("mod.cpython-*.opt-2.pyc"))
    assert not list(package.rglob("*.pyc"))
    assert probe(env, tmp_path)["from_source"] == []


def test_the_cache_prefix_drops_bytecode_of_removed_modules_and_other_pythons(tmp_path):
    """An upgrade that drops a module, or a new Python, leaves bytecode nothing will use:
    the next compile removes it, and the folders it leaves empty; the rest stays."""
    package = make_package(tmp_path, gone="X = 1\n")
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("")
    env = optimised_env(tmp_path)
    assert compile_folder(package, env).returncode == 0
    cache = tmp_path / "cache"
    mirrored = cache / package.relative_to("/")
    old_python = mirrored / "mod.cpython-39.opt-2.pyc"
    old_python.write_bytes(b"old")
    other_file = mirrored / "notes.txt"
    other_file.write_text("not bytecode")
    # Not the prefix's layout (a prefix that also holds sources): never touched.
    legacy = cache / "elsewhere" / "__pycache__" / "y.cpython-39.pyc"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")
    (package / "gone.py").unlink()
    (package / "sub" / "__init__.py").unlink()
    (package / "sub").rmdir()

    result = compile_folder(package, env)
    assert result.returncode == 0, result.stderr
    assert "removed 3 bytecode files" in result.stdout
    tag = sys.implementation.cache_tag
    assert sorted(p.name for p in mirrored.iterdir()) == [
        f"__init__.{tag}.opt-2.pyc",
        f"mod.{tag}.opt-2.pyc",
        "notes.txt",
    ]
    assert not (mirrored / "sub").exists()
    assert legacy.exists()
    assert probe(env, tmp_path)["from_source"] == []
    # Nothing left to remove: said nothing.
    assert "removed" not in compile_folder(package, env).stdout


def test_a_module_that_does_not_compile_leaves_the_others_compiled(tmp_path):
    package = make_package(tmp_path, broken="def (:\n")
    env = optimised_env(tmp_path)
    result = compile_folder(package, env)
    # Not an error for the unit's ExecStartPre: a module that cannot compile cannot be imported.
    assert result.returncode == 0
    assert "broken.py" in result.stdout and "except the modules named above" in result.stdout
    assert probe(env, tmp_path)["from_source"] == []


def test_the_folders_are_the_standard_library_the_packages_and_the_checkout():
    found = bytecode.folders()
    assert Path(os.__file__).parent in found  # the standard library
    assert any(folder.name == "site-packages" for folder in found)
    # In a checkout (an editable install) the project's packages are outside site-packages.
    assert PROJECT_ROOT / "service" in found and PROJECT_ROOT / "workers" in found
    skip = bytecode.unused()
    stdlib = Path(os.__file__).parent
    assert skip.search(f"{stdlib}/test/test_os.py") and skip.search(f"{stdlib}/tkinter/ttk.py")
    assert not skip.search(f"{stdlib}/email/parser.py")
    assert not skip.search(f"{found[-1]}/tests/whatever.py")  # only the standard library's


def test_an_optimised_worker_warns_when_it_had_to_compile_from_source(app, tmp_path):
    env = service_env(tmp_path)
    env.update(DATABASE_URL=app.config["DATABASE_URL"], REDIS_URL=app.config["REDIS_URL"])
    command = [sys.executable, "-m", "service", "worker", "--burst"]

    def started(**extra: str) -> str:
        result = subprocess.run(
            command, env={**env, **extra}, cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stderr

    # A read-only installation without the optimised bytecode: said at start, with the cure.
    log = started(
        PYTHONOPTIMIZE="2", PYTHONDONTWRITEBYTECODE="1",
        PYTHONPYCACHEPREFIX=str(tmp_path / "empty"),
    )  # fmt: skip
    assert "had no current bytecode for optimisation level 2 and were compiled from" in log
    assert "python -m service.bytecode" in log and "rebuild the image" in log
    # Unoptimised, pip's bytecode serves (and a checkout's costs nothing worth a warning).
    assert "compiled from source" not in started(PYTHONDONTWRITEBYTECODE="1")
    # (Where the bytecode is compiled first, the wheel test's worker says nothing.)


def test_bytecode_older_than_its_source_counts_as_missing(tmp_path):
    package = make_package(tmp_path)
    env = optimised_env(tmp_path)
    assert compile_folder(package, env).returncode == 0
    assert probe(env, tmp_path)["from_source"] == []
    # An upgrade changed the module, and its bytecode could not be written since.
    (package / "mod.py").write_text(MODULE + "\n# changed\n")
    os.utime(package / "mod.py", (2_000_000_000, 2_000_000_000))
    assert probe(env, tmp_path)["from_source"] == ["pkg.mod"]


def test_a_cache_that_cannot_be_written_is_one_line_and_a_failure(tmp_path):
    package = make_package(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    env = optimised_env(tmp_path, PYTHONPYCACHEPREFIX=str(tmp_path / "file" / "cache"))
    result = compile_folder(package, env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"cannot be written: {tmp_path / 'file' / 'cache'}" in result.stderr
