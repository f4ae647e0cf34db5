"""The bounce reader against the public corpus in samples/ (see samples/README.md).

Reports, and fails below, the figures of issue 13: detection of bounces,
soft bounces called hard, hard ones called soft, and any non-bounce (reply,
auto-reply, complaint, notification, ordinary mail) that would suppress
somebody. Run with `-s` to see the figures and the misses.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.bounces.parsing import MessageKind, NotABounce, message_of, read

SAMPLES = Path(__file__).parent / "samples"
BOUNCE_CLASSES = ("hard", "soft")


@dataclass
class Figures:
    bounces: int = 0
    detected: int = 0
    hard: int = 0
    hard_as_soft: int = 0
    soft: int = 0
    soft_as_hard: int = 0
    addresses: int = 0
    address_found: int = 0
    non_bounces: int = 0
    non_bounce_suppressing: int = 0
    complaints: int = 0
    complaints_found: int = 0
    misses: list[str] = field(default_factory=list)

    def rate(self, part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    def summary(self) -> str:
        return (
            f"bounces {self.bounces}: detected {self.rate(self.detected, self.bounces):.1%}; "
            f"hard {self.hard}: called soft {self.rate(self.hard_as_soft, self.hard):.1%}; "
            f"soft {self.soft}: called hard {self.rate(self.soft_as_hard, self.soft):.1%}; "
            f"address right {self.rate(self.address_found, self.addresses):.1%}; "
            f"complaints found {self.complaints_found}/{self.complaints}; "
            f"non-bounces {self.non_bounces}, suppressing {self.non_bounce_suppressing}"
        )


def manifest() -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(SAMPLES / "manifest.csv", newline="") as source:
        for row in csv.DictReader(source):
            rows[row["file"]].append(row)
    return rows


def measure(source: str = "") -> Figures:
    """The figures over the whole corpus, or over one source folder (`sisimai`...)."""
    figures = Figures()
    for name, expected in manifest().items():
        if source and not name.startswith(source + "/"):
            continue
        try:
            report = read(message_of((SAMPLES / name).read_bytes()))
        except NotABounce:
            report = None
        _score_sample(figures, name, expected, report)
    return figures


SOURCES = ("sisimai", "flufl", "cfortune", "synthetic")


def _score_sample(figures: Figures, name: str, expected: list[dict], report) -> None:
    failures = report.failures if report is not None else []
    by_address = {(f.address or "").lower(): f for f in failures}
    for row in expected:
        klass = row["class"]
        if klass not in BOUNCE_CLASSES:
            figures.non_bounces += 1
            if failures:
                figures.non_bounce_suppressing += 1
                figures.misses.append(f"{name}: {klass} read as a bounce {failures}")
            if klass == "complaint":
                figures.complaints += 1
                figures.complaints_found += report is not None and (
                    report.kind == MessageKind.COMPLAINT
                )
            continue
        figures.bounces += 1
        if not failures:
            figures.misses.append(f"{name}: {klass} bounce not detected")
            continue
        figures.detected += 1
        figures.addresses += 1
        found = by_address.get(row["address"].lower())
        figures.address_found += found is not None
        found = found or (failures[0] if len(failures) == 1 else None)
        if found is None:
            found = max(failures, key=lambda f: f.kind == klass)
        if klass == "hard":
            figures.hard += 1
            if found.kind != "hard":
                figures.hard_as_soft += 1
                figures.misses.append(f"{name}: hard called soft ({found.reason} {found.status})")
        else:
            figures.soft += 1
            if found.kind == "hard":
                figures.soft_as_hard += 1
                figures.misses.append(f"{name}: soft ({row['reason']}) called hard {found.status}")


@pytest.fixture(scope="module")
def figures() -> Figures:
    result = measure()
    # Per source, as a rough held-out check: each comes from other MTAs and years.
    for source in SOURCES:
        print(f"\n{source}: {measure(source).summary()}")
    print("\nall: " + result.summary())
    for miss in result.misses:
        print("  " + miss)
    return result


def test_corpus_is_large_and_varied(figures):
    assert figures.bounces >= 300 and figures.hard >= 100 and figures.soft >= 100
    assert figures.non_bounces >= 40


def test_bounces_are_detected(figures):
    assert figures.rate(figures.detected, figures.bounces) >= 0.95, figures.summary()


def test_soft_bounces_are_seldom_called_hard(figures):
    assert figures.rate(figures.soft_as_hard, figures.soft) <= 0.03, figures.summary()


def test_hard_bounces_are_seldom_called_soft(figures):
    assert figures.rate(figures.hard_as_soft, figures.hard) <= 0.05, figures.summary()


def test_no_non_bounce_would_suppress_anybody(figures):
    assert figures.non_bounce_suppressing == 0, figures.summary()


def test_complaints_are_recognised(figures):
    assert figures.complaints_found >= 0.9 * figures.complaints, figures.summary()


def test_the_failed_address_is_found(figures):
    assert figures.rate(figures.address_found, figures.addresses) >= 0.9, figures.summary()
