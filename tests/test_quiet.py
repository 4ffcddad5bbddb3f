# SPDX-License-Identifier: MIT
"""A quiet turn's plan (`decide.quiet`, `daemon.plans`) is the full pass's:
compared on varied states, pure, and in the turns of a real daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from waitd.decide import quiet
from waitd.decide.scheduler import Candidate, Phase, Plan, Running, Seat, Situation, plan
from waitd.decide.turns import LOOKAHEAD


@st.composite
def quiet_situations(draw: st.DrawFn) -> tuple[float, Situation]:
    """A quiet situation (`decide.quiet`'s conditions): records with limits,
    keys and ready jobs (some shared claims and keys, some ready later), runs
    running with no timeout or ended unsignalled, of records in the table or
    gone."""
    now = draw(st.floats(100.0, 200.0))
    numbers = draw(st.lists(st.integers(1, 6), min_size=0, max_size=4, unique=True))
    claims = [f"/in/f{i}" for i in range(8)]
    keys = st.none() | st.sampled_from(["k1", "k2", "k3"])
    seats = []
    for number in numbers:
        keyed = draw(st.booleans())
        jobs = [
            Candidate(
                number, draw(st.sampled_from(claims)), draw(keys) if keyed else None, f"r{number}.{i}", (f"n{i}",)
            )
            for i in range(draw(st.integers(0, 6)))
        ]
        due = draw(st.none() | st.floats(now - 5, now + 5))
        seats.append(Seat(number, draw(st.integers(1, 3)), lambda n, jobs=jobs, due=due: (jobs[:n], due), keyed=keyed))
    running = []
    for run_id in range(draw(st.integers(0, 5))):
        record = draw(st.none() | st.sampled_from(numbers or [9]))
        phase = draw(st.sampled_from([Phase.RUNNING, Phase.ENDED]))
        running.append(Running(run_id, record, draw(st.sampled_from(claims)), draw(keys), phase, now - 1.0))
    return now, Situation(now_ns=int(now * 1e9), seats=seats, running=running)


def quiet_plan(now: float, situation: Situation) -> Plan:
    records = [quiet.Record(s.number, s.jobs, s.ready, s.keyed) for s in situation.seats]
    live = [quiet.Live(r.record, r.claim, r.key) for r in situation.running if r.phase is not Phase.ENDED]
    return quiet.plan(now, records, live, any(r.phase is Phase.ENDED for r in situation.running))


@settings(max_examples=examples(500), deadline=None)
@given(quiet_situations())
def test_a_quiet_plan_is_the_full_plan(case):
    now, situation = case
    assert quiet_plan(now, situation) == plan(now, situation)


def test_a_quiet_plan_looks_ahead_for_keys():
    """A keyed record is asked for its room and LOOKAHEAD more, as the
    full pass asks: the first free key may be far down its line."""
    asked = []

    def ready(n):
        asked.append(n)
        return [Candidate(1, f"/in/f{i}", "k", i) for i in range(n)], None

    made = quiet.plan(10.0, [quiet.Record(1, 2, ready, keyed=True)], [quiet.Live(1, "/in/x", "k")], False)
    assert asked == [1 + LOOKAHEAD] and made == Plan()


# -- in a real daemon ----------------------------------------------------------------

# Loaded by the daemon's interpreter (sitecustomize, first on its PYTHONPATH):
# each quiet turn's plan is compared with the full pass's over the same
# state, the full one's taken; each pair is counted, each difference written.
_COMPARE = """
import os
from waitd.daemon import plans, turn
from waitd.decide import scheduler

_quiet = plans.quiet_plan
_out = os.environ["WAITD_TEST_QUIET"]

def _both(d, now, now_ns):
    made = _quiet(d, now, now_ns)
    if made is not None:
        full = scheduler.plan(now, turn.situation(d, now, now_ns, False))
        with open(_out, "a") as f:
            f.write("same\\n" if made == full else f"differ: {made!r} != {full!r}\\n")
        return full
    return None

plans.quiet_plan = _both
"""


def _compared(station, table: str, files: list[int], code: int = 0) -> list[str]:
    """Run --once over ready files (so many in each of in1, in2, ...), each
    quiet turn's plan compared: the comparisons (`code`: --once's exit
    status)."""
    site = station.root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_COMPARE)
    out = station.root / "compared"
    station.env.update(PYTHONPATH=f"{site}{os.pathsep}{station.env['PYTHONPATH']}", WAITD_TEST_QUIET=str(out))
    for d, count in enumerate(files, 1):
        directory = station.passdir / f"in{d}"
        directory.mkdir(exist_ok=True)
        for i in range(count):
            station.drop(f"{i:03d}.{'k' if i % 3 else 'j'}{i % 4}.g8", age_s=100 - i / 10, directory=directory)
    station.table(table)
    r = station.run("--once")
    assert r.returncode == code, r.stderr
    return Path(out).read_text().splitlines() if out.exists() else []


def test_quiet_turns_of_a_drain_plan_as_the_full_pass(station):
    """Records of one, two and three jobs, a key=, a handler that exits 75
    (retried, not a quiet end) and one that fails: every quiet turn's plan
    is the full pass's."""
    station.handler("odd", 'case "$1" in *1.g8) exit 75;; *2.g8) exit 3;; esac\n')
    p = station.passdir
    compared = _compared(
        station,
        "\n".join(
            [
                "a in1 *.g8 /bin/true 0 -1 0 jobs=2",
                f"b in2 *.g8 {p}/odd 0 -1 0 retries=1 retry=0.05",
                "c in3 *.g8 /bin/true 0 -1 0 jobs=3 pattern={n}.{k}.g8 key={k}",
                "d in4 *.g8 /bin/true 0 -1 0",
            ]
        ),
        [12, 12, 12, 12],
    )
    assert compared and set(compared) == {"same"}, [c for c in compared if c != "same"][:3]
    assert len(compared) >= 12, "few turns were quiet"


@pytest.mark.parametrize(
    "other, files, code",
    [
        ("b in2 *.g8 {p}/slow 0 -1 0 timeout=60", 2, 0),  # its run gives a deadline
        ("b in2 *.g8 /bin/true 0 0 0", 4, 0),  # keep-after removes each of its files at its end
        ("b in2 *.g8 {p}/bad 0 -1 0", 1, 1),  # its handler cannot be executed: it backs off
    ],
    ids=["timeout", "keep-after", "back-off"],
)
def test_turns_that_are_not_quiet_take_the_full_pass(station, other, files, code):
    """Beside a plain record's drain, a record in a state that is not quiet:
    each quiet turn's plan is still the full pass's (were one of those
    states taken for quiet, its plan would lack a deadline, a removal or a
    hold)."""
    station.handler("slow", "sleep 0.5\n")
    bad = station.passdir / "bad"
    bad.write_text("#!/nonexistent/interpreter\n")
    bad.chmod(0o755)
    table = "a in1 *.g8 /bin/true 0 -1 0\n" + other.format(p=station.passdir)
    compared = _compared(station, table, [30, files], code)
    assert set(compared) <= {"same"}, [c for c in compared if c != "same"][:3]
    # A back-off holds through most of the drain (no turn quiet: none compared).
    assert compared or other.startswith("b in2 *.g8 {p}/bad")
