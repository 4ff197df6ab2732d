"""bench/run's plan: the soak and abuse phases run only when named, never in a plain or
--quick run (CI's), and their rows are in the table only then. No server is started."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(os.environ.get("OPENTIM_BENCH_DIR", "")
             or Path(__file__).resolve().parents[1] / "bench")
sys.path.insert(0, str(BENCH))
import harness  # noqa: E402
import soak_phase  # noqa: E402
import suite as entry  # noqa: E402

PHASES = ("rest", "presence", "messages", "cluster", "idle", "store", "imports")


def plan(tmp_path: Path, *argv: str) -> harness.Suite:
    args = entry.parse_args([*argv, "--pg-url", "", "--redis-url", ""])
    return harness.Suite(args, tmp_path, "wrk")


@pytest.mark.parametrize("argv", [(), ("--quick",)])
def test_plain_and_quick_runs_leave_soak_and_abuse_out(tmp_path: Path,
                                                      argv: tuple[str, ...]) -> None:
    run = plan(tmp_path, *argv)
    assert all(run.wanted(p) for p in PHASES)
    assert not run.wanted("soak") and not run.wanted("abuse")
    assert not [r for r in run.rows if r.scenario.only]


def test_a_named_phase_runs_alone_with_its_rows(tmp_path: Path) -> None:
    run = plan(tmp_path, "--only", "soak", "--soak-minutes", "1.5")
    assert run.wanted("soak") and not run.wanted("abuse")
    assert not any(run.wanted(p) for p in PHASES)
    soak = [r for r in run.rows if r.scenario.only]
    assert {r.scenario.special for r in soak} == set(soak_phase.SERIES)
    assert "over 1.5 min" in soak[0].label
    both = plan(tmp_path, "--only", "abuse,soak")
    assert {r.scenario.only for r in both.rows if r.scenario.only} == {"abuse", "soak"}


def test_the_soak_slope_is_a_least_squares_fit_in_kb_per_minute() -> None:
    # 1 KiB more every 30 s, with noise that cancels out: 2 KB/min
    points = [(30.0 * i, 1024.0 * i + (100 if i % 2 else -100)) for i in range(20)]
    assert soak_phase.slope(points) == pytest.approx(2.0, abs=0.05)
    assert soak_phase.slope([(0.0, 5.0)]) == 0.0
