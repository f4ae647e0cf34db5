"""Bytecode for the interpreter's optimisation level, compiled before a process needs it.

Workers run with `PYTHONOPTIMIZE=2` (the systemd unit, compose.yaml): Python without
docstrings and asserts, about 6 MB less for a worker and for each of its work horses
(bench/README.md, Worker memory). That level's bytecode lives in `.opt-2.pyc` files,
which pip never writes. Where nothing can be written (the image, whose folders are
read-only to its user), Python would compile every module from source at every start,
and the compiler's leftovers take back about half of what the optimisation saves; where
the bytecode can be written (the unit's cache directory), the first start after an
install or upgrade pays that once. Hence:

- `python -m service.bytecode [FOLDER ...]` compiles, at the running interpreter's
  level, the standard library (without its tests and GUI), the installed packages and
  the project's own, or the folders given: beside the sources, or into
  `PYTHONPYCACHEPREFIX` when that is set (the unit's cache directory). Only what
  changed is compiled again. Exit status 1 when the bytecode cannot be written at all.
  In `PYTHONPYCACHEPREFIX` it also removes what no longer applies: the bytecode of
  modules that are gone (an upgrade dropped them, the venv moved) and of other Python
  versions, which would otherwise pile up release after release (`prune`).
- `compiled_from_source()` names the loaded modules that still have no current
  bytecode on disk; the worker warns about them at start.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import sysconfig
import tempfile
from pathlib import Path

PROJECT_PACKAGES = ("service", "workers")
# Parts of the standard library that no process of the service imports.
UNUSED_STDLIB = (
    "site-packages", "dist-packages", "test", "idlelib", "lib2to3", "tkinter", "turtledemo",
    "ensurepip",
)  # fmt: skip


def folders() -> list[Path]:
    """The standard library, the environment's packages and the project's own, each once.

    The project's are inside the packages when installed from the wheel, and outside
    them in a checkout (an editable install).
    """
    paths = sysconfig.get_paths()
    project = Path(__file__).resolve().parent.parent
    found: list[Path] = []
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        folder = Path(paths[key])
        if folder.is_dir() and folder not in found:
            found.append(folder)
    if not any(project.is_relative_to(folder.resolve()) for folder in found):
        found += [project / package for package in PROJECT_PACKAGES]
    return found


def unused() -> re.Pattern[str]:
    """The paths `compile_folders` leaves alone: the unused parts of the standard library."""
    stdlib = re.escape(str(Path(sysconfig.get_paths()["stdlib"])))
    return re.compile(rf"^{stdlib}/({'|'.join(map(re.escape, UNUSED_STDLIB))})/")


def compile_folders(paths: list[Path]) -> bool:
    """Compile every module under `paths` that has no current bytecode; False if one failed.

    A module that cannot be compiled cannot be imported either: its error is printed and
    the rest is compiled all the same.
    """
    import compileall  # only here: a worker imports this module for `compiled_from_source`

    skip = unused()
    # compileall passes over linked folders; packages linked into site-packages (some
    # installers, the wheel test) are imported through the link, so compiled through it.
    linked = [entry for path in paths if path.is_dir() for entry in sorted(path.iterdir())
              if entry.is_symlink() and entry.is_dir()]  # fmt: skip
    results = [
        compileall.compile_dir(path, quiet=1, rx=skip, workers=1) for path in [*paths, *linked]
    ]
    return all(results)


def unwritable_prefix() -> str | None:
    """Why bytecode cannot be written into PYTHONPYCACHEPREFIX, or None (also when unset).

    Checked once up front, so that a full or read-only cache gives one line, not an
    error for each of thousands of modules.
    """
    prefix = sys.pycache_prefix
    if not prefix:
        return None
    try:
        os.makedirs(prefix, exist_ok=True)
        with tempfile.TemporaryFile(dir=prefix) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
    except OSError as exc:
        return f"{prefix}: {exc.strerror or exc}"
    return None


# A file of the prefix's tree: `<source's folder>/<module>.<cache tag>[.opt-N].pyc`.
PREFIX_FILE = re.compile(r"^(?P<module>[^.]+)\.(?P<tag>[^.]+)(\.opt-[12])?\.pyc$")


def prune(prefix: Path) -> int:
    """Remove from the cache prefix the bytecode no module uses any more; how many files.

    That is the bytecode of another Python (its cache tag differs) and of a source that
    no longer exists, where the prefix's tree mirrors the sources' absolute paths; then
    the folders left empty. Any other file is left alone, as is a `__pycache__` folder
    (not the prefix's layout: a prefix set to a folder that also holds sources).
    """
    tag = sys.implementation.cache_tag
    removed = 0
    for folder, _, files in os.walk(prefix, topdown=False):
        here = Path(folder)
        if here.name == "__pycache__":
            continue
        source_folder = Path("/") / here.relative_to(prefix)
        for name in files:
            match = PREFIX_FILE.match(name)
            if match is None:
                continue
            source = source_folder / f"{match['module']}.py"
            if match["tag"] != tag or not source.is_file():
                (here / name).unlink(missing_ok=True)
                removed += 1
        if here != prefix and not any(here.iterdir()):
            here.rmdir()
    return removed


def _current(source: str, cached: str) -> bool:
    """Whether `cached` holds bytecode for `source` as it is now (what the import checks)."""
    try:
        with open(cached, "rb") as file:
            header = file.read(16)
        stat = os.stat(source)
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little") != 0:
        return True  # checked by hash, not by time: the import decides, not worth reading
    mtime, size = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
    return (mtime, size) == (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)


def compiled_from_source() -> list[str]:
    """The loaded modules without current bytecode on disk (sorted by name).

    Python compiled them from source in this process and could not write the result
    (where it could, the file is there now), so the next process will compile them too.
    """
    missing = []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or not spec.cached:
            continue  # built in, frozen, or an extension module: no bytecode
        if not (spec.origin or "").endswith(".py"):
            continue  # loaded from bytecode alone, without a source to compile
        if not _current(spec.origin, spec.cached):
            missing.append(name)
    return sorted(missing)


def main(argv: list[str]) -> int:
    level = sys.flags.optimize
    reason = unwritable_prefix()
    if reason is not None:
        print(f"bytecode for optimisation level {level} cannot be written: {reason}",
              file=sys.stderr)  # fmt: skip
        return 1
    paths = [Path(arg) for arg in argv] or folders()
    ok = compile_folders(paths)
    where = sys.pycache_prefix or "beside the sources"
    print(f"bytecode for optimisation level {level} is up to date in {where}"
          + ("" if ok else " (except the modules named above, which do not compile)"))  # fmt: skip
    if sys.pycache_prefix:
        removed = prune(Path(sys.pycache_prefix))
        if removed:
            print(f"removed {removed} bytecode files of modules that are gone or of another Python")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
