"""Bytecode for the interpreter's optimisation level, compiled before a process needs it.

Workers run with `PYTHONOPTIMIZE=2` (the systemd unit, compose.yaml): Python without
docstrings and asserts, about 6 MB less for a worker and for each of its work horses
(bench/README.md, Worker memory). That level's bytecode lives in `.opt-2.pyc` files,
which pip never writes and a read-only installation cannot: without them Python compiles
every module from source at every start, which costs more memory than the docstrings
save. Hence:

- `python -m service.bytecode [FOLDER ...]` compiles, at the running interpreter's
  level, the standard library (without its tests and GUI) and the installed packages,
  or the folders given: beside the sources, or into `PYTHONPYCACHEPREFIX` when that is
  set (the systemd unit's cache directory). Only what changed is compiled again.
- `compiled_from_source()` names the loaded modules that had no bytecode on disk; the
  worker warns about them at start.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
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
    if not any(project.is_relative_to(folder) for folder in found):
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
    results = [compileall.compile_dir(path, quiet=1, rx=skip, workers=1) for path in paths]
    return all(results)


def compiled_from_source() -> list[str]:
    """The loaded modules whose bytecode is not on disk (sorted by name).

    Python compiled them from source in this process, and will again in the next one.
    """
    missing = []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or not spec.cached:
            continue  # built in, frozen, or an extension module: no bytecode
        if not os.path.exists(spec.cached):
            missing.append(name)
    return sorted(missing)


def main(argv: list[str]) -> int:
    paths = [Path(arg) for arg in argv] or folders()
    ok = compile_folders(paths)
    where = sys.pycache_prefix or "beside the sources"
    level = sys.flags.optimize
    print(f"bytecode for optimisation level {level} is up to date in {where}"
          + ("" if ok else " (except the modules named above, which do not compile)"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
