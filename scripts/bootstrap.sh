# Sourced by scripts/run and scripts/test: makes .venv with the project and its
# dev tools installed, reinstalling whenever the dependency set changes.
set -euo pipefail
# set -e stops silently; say where instead.
trap 'echo "${BASH_SOURCE[0]:-$0}:$LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "Python 3.11 or newer is needed: none found as '$python' (set PYTHON to its path)." >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python 3.11 or newer is needed; '$python' is $("$python" -V 2>&1)" \
        "(set PYTHON to a newer one)." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ] && ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "Python's venv module (with ensurepip) is missing: on Debian or Ubuntu," \
        "apt-get install python3-venv." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "Creating the virtual environment in .venv ..." >&2
    "$python" -m venv .venv
fi
# The stamp names the dependency set: any change to what pyproject.toml or a
# lock file under requirements/ asks for reinstalls.
dependency_files=(pyproject.toml)
for lock in requirements/*.txt; do
    if [ -f "$lock" ]; then dependency_files+=("$lock"); fi
done
stamp=".venv/.installed-$(cat "${dependency_files[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "Installing the project and its dependencies into .venv ..." >&2
    # pip as the venv brought it: upgrading to whatever is newest would make
    # every fresh machine run a different installer. Exactly the locked
    # releases, each checked against its sha256 (requirements/dev.txt, made by
    # scripts/lock); then the project itself, built by the locked hatchling.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --require-hashes -r requirements/dev.txt
    # A checkout built before the move to hatchling keeps setuptools'
    # zpravodaj.egg-info, whose stale version importlib.metadata would read.
    rm -rf zpravodaj.egg-info
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e .
    # A dependency added to pyproject.toml but not to the lock shows here.
    if ! broken="$(.venv/bin/python -m pip check --disable-pip-version-check 2>&1)"; then
        echo "$broken" >&2
        echo "requirements/dev.txt does not satisfy pyproject.toml: run scripts/lock." >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# The gettext catalogues (service/translations/*.po) compiled for this checkout;
# only those edited since their last compile are written (the wheel compiles its own).
.venv/bin/python -c 'from service.i18n import compile_catalogues; compile_catalogues()'
export PATH="$root/.venv/bin:$PATH"
