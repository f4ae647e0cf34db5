"""The suite's own machinery: `xdist_group` keeps a group's tests in one process.

scripts/test runs pytest-xdist with `--dist loadgroup`, and some tests rely on their
group: the browser tests share one Chromium, SpamAssassin's module fixture scores every
kind of mail once per sender, and the wheel and container tests build and install in
turn. pytest 9.2 with pytest-xdist 3.8 dropped the groups without a word (the tests
spread over every process, pytest-dev/pytest-xdist#1386), which the lock's pin on pytest
now avoids; this runs a small suite the way scripts/test does and looks where each
test ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GROUPED = """
import os
import pytest

pytestmark = [pytest.mark.xdist_group("together")]


@pytest.mark.parametrize("n", range(6))
def test_grouped(n):
    with open(os.environ["WHERE"], "a") as where:
        where.write(f"{os.environ['PYTEST_XDIST_WORKER']} grouped\\n")
"""

LOOSE = """
import os
import pytest


@pytest.mark.parametrize("n", range(6))
def test_loose(n):
    with open(os.environ["WHERE"], "a") as where:
        where.write(f"{os.environ['PYTEST_XDIST_WORKER']} loose\\n")
"""


def test_a_groups_tests_run_in_one_process_under_loadgroup(tmp_path: Path):
    (tmp_path / "test_grouped_a.py").write_text(GROUPED)
    (tmp_path / "test_grouped_b.py").write_text(GROUPED)
    (tmp_path / "test_loose.py").write_text(LOOSE)
    where = tmp_path / "where.txt"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env={"WHERE": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [line.split() for line in where.read_text().splitlines()]
    grouped = [worker for worker, kind in runs if kind == "grouped"]
    assert len(grouped) == 12 and len([1 for _, kind in runs if kind == "loose"]) == 6
    assert len(set(grouped)) == 1, f"the group ran in {sorted(set(grouped))}"
