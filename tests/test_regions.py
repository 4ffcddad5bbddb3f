# SPDX-License-Identifier: MIT
"""Regions (decide/regions.py, config/geodata.py) side by side with the
real region collector of pytroll-collectors.

The same granules, in the same order, go to waitd's `RegionIndex` and to
pytroll_collectors.region_collector.RegionCollector, in this process; both
must collect the same members for each area and pass.  The collector
counts its timeliness from the first granule's arrival
(`timeliness_from_arrival`), as waitd does; at its timeout the test does
what its trigger does (`finish`).  The orbital elements are real (Metop-B,
Metop-C and NOAA-20 of 2024-06-17, tests/data/regions/weather.tle); the
granules are three-minute AVHRR granules of Metop-C that evening.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from conftest import deliver, quiet_for, read_jsonl, wait_for

pytest.importorskip("trollsched")
pytest.importorskip("pytroll_collectors.region_collector")

from pyresample import parse_area_file  # noqa: E402
from pytroll_collectors import region_collector  # noqa: E402
from pytroll_collectors.region_collector import RegionCollector  # noqa: E402
from trollsched.satpass import Pass  # noqa: E402

from waitd.config import geodata, options, table  # noqa: E402
from waitd.decide import groups  # noqa: E402
from waitd.decide.facts import identity  # noqa: E402
from waitd.decide.regions import RegionIndex, nearest  # noqa: E402

DATA = Path(__file__).parent / "data" / "regions"
AREAS = str(DATA / "areas.yaml")
PATTERN = "{platform_name}_{sensor}_{start_time:%Y%m%d%H%M%S}_{end_time:%Y%m%d%H%M%S}.l1b"
STEP = datetime.timedelta(minutes=3)
EVENING = datetime.datetime(2024, 6, 17, 20, 24)  # a Metop-C pass over Scandinavia: 20:30, 20:33, 20:36


def granules(first: datetime.datetime, n: int, platform: str = "Metop-C") -> list[str]:
    return [
        f"{platform}_avhrr_{first + k * STEP:%Y%m%d%H%M%S}_{first + (k + 1) * STEP:%Y%m%d%H%M%S}.l1b" for k in range(n)
    ]


@pytest.fixture(scope="module")
def geo() -> geodata.Geodata:
    found, problem = geodata._read(AREAS, str(DATA))
    assert found is not None, problem
    return found


@pytest.fixture(autouse=True)
def _tles(monkeypatch):
    # The collector reads its elements through pyorbital's TLES: never the network.
    monkeypatch.setenv("TLES", str(DATA / "weather.tle"))
    monkeypatch.setattr(region_collector, "Pass", _RememberedPass)


# The collector draws each granule's swath over its area (trollsched's
# `Pass.area_coverage`, a third of a second of CPU each), again for each
# granule of each call of `collector_sets`: the same granules recur from
# call to call.  Its answer for one satellite, time span, instrument, area
# and set of elements is remembered for the test process (only the
# collector's: waitd's own geometry is drawn by waitd each time).
_COVERAGE: dict[tuple, float] = {}


class _RememberedPass:
    """trollsched's `Pass` as the collector uses it: its `area_coverage` remembered."""

    def __init__(self, satellite: str, risetime: datetime.datetime, falltime: datetime.datetime, **kw) -> None:
        self._args = (satellite, risetime, falltime)
        self._kw = kw

    def area_coverage(self, area) -> float:
        key = (
            *self._args,
            tuple(sorted(self._kw.items())),
            area.area_id,
            str(area.crs),
            area.area_extent,
            os.environ.get("TLES"),
        )
        if key not in _COVERAGE:
            _COVERAGE[key] = Pass(*self._args, **self._kw).area_coverage(area)
        return _COVERAGE[key]


def collector_sets(area: str, names: list[str]) -> list[list[str]]:
    """What the real collector publishes for the names, in order, then at its timeout."""
    collector = RegionCollector(
        parse_area_file(AREAS, area)[0], timeliness=datetime.timedelta(seconds=60), timeliness_from_arrival=True
    )
    out = []
    for name in names:
        parsed = options.Options(pattern=PATTERN).fields(name, "/in", "t")
        assert parsed is not None
        meta = {k: parsed[k] for k in ("platform_name", "sensor", "start_time", "end_time")}
        found = collector({**meta, "uri": name, "uid": name})
        if found:
            out.append(sorted(m["uid"] for m in found))
    if collector.granules:  # its timeout: what its trigger publishes then
        out.append(sorted(m["uid"] for m in collector.finish()))
    return out


def waitd_sets(geo: geodata.Geodata, area: str, names: list[str]) -> list[list[str]]:
    """What waitd runs for the names: each group once all its predicted
    granules are in, or past its timeliness with those that are."""
    opts, problems = options.parse([f"area={area}", f"pattern={PATTERN}", "timeliness=60"])
    assert not problems
    assert opts.group is not None
    index = RegionIndex(opts.group, "t", geo)
    ran: dict[str, list[str]] = {}
    for now, name in enumerate(names):
        index.add(name, opts.fields(name, "/in", "t") or {}, now)
        for group in index.groups.values():
            found, _ = groups.verdict(opts.group, group, group.files, group.files, now)
            if found is groups.Verdict.READY and group.gid not in ran:
                ran[group.gid] = sorted(group.files.values())
    late = 10**12  # past every timeliness
    for group in index.groups.values():
        found, _ = groups.verdict(opts.group, group, group.files, group.files, late)
        if found is groups.Verdict.READY and group.gid not in ran:
            ran[group.gid] = sorted(group.files.values())
    return list(ran.values())


def test_a_pass_in_order_out_of_order_and_with_one_missing_and_an_area_it_misses(geo):
    """The granules of one evening, four ways: in one test, the collector
    draws each granule's swath once (`_RememberedPass`)."""
    names = granules(EVENING, 6)
    mine = waitd_sets(geo, "scandinavia", names)
    assert mine == collector_sets("scandinavia", names)
    assert mine == [granules(EVENING + 2 * STEP, 3)]
    assert waitd_sets(geo, "tasmania", names) == collector_sets("tasmania", names) == []
    # Out of order, the pass's middle one first.
    shuffled = [names[i] for i in (3, 5, 0, 4, 2, 1)]
    mine = waitd_sets(geo, "scandinavia", shuffled)
    assert mine == collector_sets("scandinavia", shuffled) == [granules(EVENING + 2 * STEP, 3)]
    # The pass's 20:33 never comes: the others at timeliness.
    without = [n for n in names if n != names[3]]
    mine = waitd_sets(geo, "scandinavia", without)
    assert mine == collector_sets("scandinavia", without) == [[names[2], names[4]]]


def test_a_known_pass_places_a_granule_without_geometry(geo):
    opts, _ = options.parse([f"pattern={PATTERN}", "area=scandinavia"])
    assert opts.group is not None
    index = RegionIndex(opts.group, "t", geo)
    names = granules(EVENING + 2 * STEP, 3)
    index.add(names[1], opts.fields(names[1], "/in", "t") or {}, 0)
    computed = index.geometry.computed
    for name in (names[0], names[2]):
        found = index.add(name, opts.fields(name, "/in", "t") or {}, 1)
        assert not isinstance(found, str)
    assert index.geometry.computed == computed  # predicted: no swath drawn again
    (group,) = index.groups.values()
    assert group.gid == "t,area=scandinavia,platform_name=Metop-C,pass=20240617T203000"


def test_a_granule_that_cannot_be_placed_is_told_why(geo):
    opts, _ = options.parse([f"pattern={PATTERN}", "area=scandinavia"])
    assert opts.group is not None
    index = RegionIndex(opts.group, "t", geo)
    for name, why in (
        ("Metop-C_nosuch_20240617203000_20240617203300.l1b", "cannot draw the swath of nosuch on Metop-C"),
        ("Metop-C_avhrr_20240617203000_20240617203000.l1b", "is not after its start_time"),
        ("Metop-C_avhrr_20240617203000_20240618203000.l1b", "or over 2:00:00 after it"),
        ("Metop-A_avhrr_20240617203000_20240617203300.l1b", "no orbital elements for Metop-A"),
    ):
        found = index.add(name, opts.fields(name, "/in", "t") or {}, 0)
        assert isinstance(found, str) and why in found, found
    assert index.groups == {}


def test_orbital_elements_nearest_in_time_or_none(geo):
    evening = datetime.datetime(2024, 6, 17, 20)
    found = nearest(geo.elements, "Metop-C", evening)
    assert not isinstance(found, str) and found.number == "43689"
    assert "within 14 days" in str(nearest(geo.elements, "Metop-C", evening + datetime.timedelta(days=30)))
    assert "no orbital elements for Metop-A" in str(nearest(geo.elements, "Metop-A", evening))
    assert "knows no satellite number" in str(nearest(geo.elements, "Nowhere-1", evening))


def test_check_names_the_line_of_each_problem(tmp_path):
    passdir = tmp_path
    (passdir / "waitd.conf").write_text(f"[regions]\nareas = areas.yaml\ntle = {DATA}\n")
    (passdir / "areas.yaml").write_text((DATA / "areas.yaml").read_text())
    line = f"t {tmp_path} * - 0 -1 0 pattern={PATTERN} area="
    (passdir / "incoming").write_text(f"# regions\n{line}scandinavia\n{line}atlantis\n")
    records, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert [r.line for r in records] == [2] and records[0].geo is not None
    assert [(e.line, "defines no area atlantis" in e.what) for e in errors] == [(3, True)]
    broken = "broken:\n  projection: {proj: nosuch}\n  shape: {height: 1, width: 1}\n  area_extent: [0, 0, 1, 1]\n"
    dynamic = "dynamic:\n  projection: {proj: stere, lat_0: 90}\n"
    (passdir / "areas.yaml").write_text((DATA / "areas.yaml").read_text() + broken + dynamic)
    (passdir / "incoming").write_text(f"{line}scandinavia\n{line}broken\n{line}dynamic\n")
    records, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert [r.line for r in records] == [1]  # an area that cannot be built costs its records only
    assert [e.line for e in errors] == [2, 3]
    assert "area broken does not parse" in errors[0].what and "a dynamic area" in errors[1].what
    (passdir / "areas.yaml").write_text("scandinavia:\n  projection: [stere\n")
    _, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert {e.line for e in errors} == {1, 2, 3}  # every area= record
    assert f"{passdir}/areas.yaml:3: the area definitions do not parse" in errors[0].what
    (passdir / "waitd.conf").write_text("[daemon]\n")
    _, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert "has no [regions] section" in errors[0].what


def test_a_record_of_two_areas_is_a_record_per_area(tmp_path):
    """area=A,B: a record per area, numbered on from the line's (the
    records after it too, bad line or good), each its own identity, the
    process-name run as written; area=A alone as it always was."""
    passdir = tmp_path
    (passdir / "waitd.conf").write_text(f"[regions]\nareas = {AREAS}\ntle = {DATA}\n")
    line = f"t {tmp_path} *.l1b g 0 -1 0 pattern={PATTERN} area="
    text = f"{line}scandinavia\n{line}baltic,scandinavia\nu {tmp_path} *.x h 0 -1 0\n"
    (passdir / "incoming").write_text(text)
    records, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert errors == []
    assert [(r.number, r.line, r.process, r.command, r.options.area) for r in records] == [
        (1, 1, "g", "g", "scandinavia"),
        (2, 2, "g area=baltic", "g", "baltic"),
        (3, 2, "g area=scandinavia", "g", "scandinavia"),
        (4, 3, "h", "h", None),
    ]
    assert len({identity(r) for r in records}) == 4
    assert [r.options.group.region.areas for r in records[:3] if r.options.group and r.options.group.region] == [
        ("scandinavia",),
        ("baltic",),
        ("scandinavia",),
    ]
    assert all(r.geo is not None for r in records[:3])
    (only,) = table.per_area(records[0])
    assert only is records[0]  # one area: byte for byte the record it was
    assert "area=baltic" in "\n".join(records[1].options.described())
    # A bad line of two areas still takes two numbers; an unknown area is its line's error, once.
    bad = f"{line}baltic,atlantis\n{line}scandinavia,baltic jobs=0\nu {tmp_path} *.x h 0 -1 0\n"
    (passdir / "incoming").write_text(bad)
    records, errors = table.read(str(passdir / "incoming"), str(passdir), os.environ)
    assert [(r.number, r.line) for r in records] == [(5, 3)]
    assert [e.line for e in errors] == [1, 2] and "defines no area atlantis" in errors[0].what
    pub, _ = table.parse(f"t {tmp_path} *.l1b - 0 -1 0 pattern={PATTERN} area=a,b", "i", str(passdir), {})
    assert [(r.process, r.publish_only) for r in pub] == [("- area=a", True), ("- area=b", True)]


def test_options_of_regions_are_checked():
    def problems(*items: str) -> list[str]:
        return options.parse(list(items))[1]

    assert problems(f"pattern={PATTERN}", "area=scandinavia", "timeliness=60") == []
    assert problems(f"pattern={PATTERN}", "area=a,b") == []
    assert problems(f"pattern={PATTERN}", "area=a,b,a") == ["option area=a,b,a: area a named twice"]
    assert "expected area names joined by commas" in problems(f"pattern={PATTERN}", "area=a,,b")[0]
    assert problems("duration=180") == ["option duration= is for regions: give area= too"]
    no_end = "pattern={platform_name}_{start_time:%Y%m%d%H%M%S}.l1b"
    assert problems(no_end, "area=a", "duration=180", "sensor=avhrr") == []
    assert [p.split(" ")[0:3] for p in problems(no_end, "area=a")] == [
        ["area=", "needs", "an"],
        ["area=", "needs", "a"],
    ]
    assert "critical= and area= do not go together" in problems(f"pattern={PATTERN}", "area=a", "critical=:1")[0]
    assert "tolerance= and area= do not go together" in problems(f"pattern={PATTERN}", "area=a", "tolerance=5")[0]


def test_the_daemon_gathers_a_pass_across_kill_9_and_runs_it_once(station):
    """The real daemon: a granule off the area is left alone, the pass's
    group is open in `-s status` with its missing granule, survives a
    kill -9, and runs once, with the members the collector collects."""
    (station.passdir / "waitd.conf").write_text(f"[regions]\nareas = {AREAS}\ntle = {DATA}\n")
    runs = station.passdir / "runs"
    station.handler(
        "g",
        f'echo "$WAITD_GROUP|$WAITD_F_collection_area_id|$(for f in "$@"; do basename "$f"; done | tr "\\n" " ")"'
        f' >> "{runs}"\n',
    )
    station.table(f"x in *.l1b {station.passdir}/g 0 -1 0 pattern={PATTERN} area=scandinavia timeliness=600")
    station.start()
    off, *pass_ = granules(EVENING + STEP, 4)  # 20:27 (off the area), then the pass: 20:30, 20:33, 20:36
    for name in (off, *pass_[:2]):
        deliver(station, name, age_s=0)
    gid = "x,area=scandinavia,platform_name=Metop-C,pass=20240617T203000"

    def open_groups() -> list[dict]:
        done = station.run("-s", "status", "--json")
        return json.loads(done.stdout)["records"][0]["open_groups"] if done.returncode == 0 else []

    wait_for(lambda: [g["group"] for g in open_groups()] == [gid], 20, "the pass's group open in the status")
    (shown,) = open_groups()
    assert shown["missing"] == [":20240617T203600"], shown
    wait_for(lambda: "does not overlap area scandinavia" in station.log(), 10, "the granule off the area told")
    assert station.proc is not None
    station.proc.kill()
    station.proc.wait()
    station.start()
    deliver(station, pass_[2], age_s=0)
    wait_for(lambda: runs.exists() and runs.read_text().count("\n") == 1, 20, "the pass's one run")
    group, area, members = runs.read_text().strip().split("|")
    assert (group, area) == (gid, "scandinavia")
    assert [sorted(members.split())] == collector_sets("scandinavia", [off, *pass_]) == [pass_]
    assert station.log().count("does not overlap area scandinavia") == 2  # once before the kill, once after
    assert station.stop() == 0
    assert "Warning" not in station.stderr() and "Numba" not in station.stderr()  # the libraries kept quiet


def test_a_record_of_two_areas_runs_each_areas_group_once_across_kill_9(station):
    """The real daemon, area=baltic,scandinavia: a pass over both areas is
    two groups, the granules over both members of each, each group run
    once with the members the collector (one per area, as the gatherer
    has them) collects for its area; a kill -9 while one group's handler
    runs and the other group gathers neither repeats nor loses either
    (the run is adopted by its area's record)."""
    (station.passdir / "waitd.conf").write_text(f"[regions]\nareas = {AREAS}\ntle = {DATA}\n")
    runs, starts, go = (station.passdir / n for n in ("runs", "starts", "go"))
    station.handler(
        "g",
        f'echo "$WAITD_RECORD" >> "{starts}"\n'
        f'while [ ! -e "{go}" ]; do sleep 0.05; done\n'
        f'echo "$WAITD_RECORD|$WAITD_GROUP|$WAITD_F_collection_area_id|'
        f'$(for f in "$@"; do basename "$f"; done | tr "\\n" " ")" >> "{runs}"\n',
    )
    handler = f"{station.passdir}/g"
    station.table(f"x in *.l1b {handler} 0 -1 0 pattern={PATTERN} area=baltic,scandinavia timeliness=600")
    station.start()
    names = granules(EVENING, 5)  # 20:24 (off both), 20:27 (baltic), 20:30, 20:33 (both), 20:36 (scandinavia)
    for name in names[:4]:
        deliver(station, name, age_s=0)
    gid = "x,area={},platform_name=Metop-C,pass={}"
    baltic, scandinavia = gid.format("baltic", "20240617T202700"), gid.format("scandinavia", "20240617T203000")

    def lines() -> list[list[str]]:
        return [line.split("|") for line in runs.read_text().splitlines()] if runs.exists() else []

    def status() -> list[dict]:
        done = station.run("-s", "status", "--json")
        return json.loads(done.stdout)["records"] if done.returncode == 0 else []

    wait_for(lambda: starts.exists() and starts.read_text() == "1\n", 20, "the baltic group's handler started")
    wait_for(lambda: len(status()) == 2 and status()[1]["open_groups"], 20, "the scandinavia group open")
    shown = status()
    assert [(r["number"], r["process"]) for r in shown] == [
        (1, f"{handler} area=baltic"),
        (2, f"{handler} area=scandinavia"),
    ]
    assert [(g["group"], g["missing"]) for g in shown[1]["open_groups"]] == [(scandinavia, [":20240617T203600"])]
    assert shown[0]["open_groups"] == []
    assert station.proc is not None
    station.proc.kill()
    station.proc.wait()
    station.start()
    go.touch()
    deliver(station, names[4], age_s=0)
    wait_for(lambda: len(lines()) == 2, 20, "the baltic run's end and the scandinavia group's run")
    wait_for(lambda: len(station.ends()) == 6, 20, "both runs' ends in the history")
    quiet_for(1.0, lambda: len(lines()) == 2)
    assert starts.read_text() == "1\n2\n"  # the baltic run adopted, not started again
    ran = {area: (record, group, sorted(members.split())) for record, group, area, members in lines()}
    assert ran == {
        "baltic": ("1", baltic, names[1:4]),
        "scandinavia": ("2", scandinavia, names[2:5]),
    }
    for area in ("baltic", "scandinavia"):
        assert [ran[area][2]] == collector_sets(area, names)
    # One end a member a group, under its area's process-name: the adopted
    # baltic run's status 1 (waitd, restarted, is not its parent), the
    # scandinavia run's 2.
    ends = sorted((e.process, e.status, os.path.basename(e.path)) for e in station.ends())
    assert ends == sorted(
        [(f"{handler} area=baltic", 1, n) for n in names[1:4]]
        + [(f"{handler} area=scandinavia", 2, n) for n in names[2:5]]
    )
    # A reload of the same table keeps both records: nothing to warn of.
    assert station.run("-s", "reload").returncode == 0
    assert "process-name changed" not in station.log()
    # Told once a granule a life of the daemon: 20:24 twice and 20:36 for
    # baltic, 20:24 and 20:27 twice for scandinavia.
    assert [station.log().count(f"does not overlap area {a}") for a in ("baltic", "scandinavia")] == [3, 4]
    assert station.stop() == 0


def test_a_regions_group_is_published_as_a_collection():
    from waitd.formats import events as ev
    from waitd.sinks.posttroll import message

    paths = tuple(f"/in/{n}" for n in granules(EVENING + 2 * STEP, 2))
    fields = {"platform_name": "Metop-C", "start_time": "2024-06-17T20:30:00", "collection_area_id": "scandinavia"}
    about = ev.About(1, "x", None, "-", paths=paths, group="g", fields=fields)
    subject, kind, data = message(ev.Ready("id", 0.0, about), None)
    assert (subject, kind, data["collection_area_id"]) == ("/x", "collection", "scandinavia")
    assert data["collection"] == [{"uri": p, "uid": os.path.basename(p)} for p in paths]
    assert data["start_time"] == datetime.datetime(2024, 6, 17, 20, 30)


def test_a_publish_only_record_publishes_a_pass_at_timeliness_once_as_a_collection(station):
    """Publish-only: the pass, one granule missing, is published at its
    timeliness, with the granules the collector publishes, as the
    collection message the gatherer sends; its late granule is never
    published; a platform without elements is told once."""
    from waitd.formats import events as ev
    from waitd.sinks.posttroll import message

    events = station.passdir / "events.jsonl"
    (station.passdir / "waitd.conf").write_text(
        f"[regions]\nareas = {AREAS}\ntle = {DATA}\n\n[sink log]\ntype = jsonl\npath = {events}\n"
    )
    station.table(f"x in *.l1b - 0 -1 0 pattern={PATTERN} area=scandinavia timeliness=1")
    station.start()
    pass_ = granules(EVENING + 2 * STEP, 3)  # 20:30, 20:33, 20:36
    for name in (pass_[0], pass_[2], *granules(EVENING, 1, platform="NOAA-21")):
        deliver(station, name, age_s=0)

    def ready() -> list[dict]:
        return [e for e in read_jsonl(events) if e["type"] == "ready"]

    wait_for(ready, 20, "the pass published at its timeliness")
    # The turn's log lines are written when it is over: a sink may have the event first.
    told = "no orbital elements for NOAA-21"
    wait_for(lambda: told in station.log(), 20, "the platform without elements told")
    arrived = [pass_[0], pass_[2]]
    (published,) = ready()
    assert [sorted(os.path.basename(p) for p in published["paths"])] == collector_sets("scandinavia", arrived)
    _, kind, data = message(ev.from_json(published), None)
    assert (kind, data["collection_area_id"], data["platform_name"]) == ("collection", "scandinavia", "Metop-C")
    assert (data["start_time"], data["end_time"]) == (EVENING + 2 * STEP, EVENING + 5 * STEP)
    deliver(station, pass_[1], age_s=0)
    wait_for(lambda: "arrived after its group" in station.log(), 20, "the late granule told")
    quiet_for(1.0, lambda: len(ready()) == 1)
    assert station.stop() == 0
    assert station.log().count(told) == 1


def test_without_the_libraries_area_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyresample", None)  # as if not installed
    found, problem = geodata._read(AREAS, str(DATA))
    assert found is None and problem is not None
    assert "area= needs pyresample, which is not installed" in problem and "waitd[regions]" in problem


def test_circles_that_hold_polygons_apart_or_not():
    import numpy as np
    from pyresample.spherical import SphPolygon

    from waitd.decide.regions import _apart, _cap

    def square(lon: float, lat: float, half: float = 2.0) -> SphPolygon:
        corners = [
            (lon - half, lat + half),
            (lon + half, lat + half),
            (lon + half, lat - half),
            (lon - half, lat - half),
        ]
        return SphPolygon(np.radians(np.array(corners)))

    here, near, far = square(10, 60), square(13, 61), square(-170, -40)
    cap = _cap(here)
    assert cap is not None
    assert all(np.arccos(np.clip(v @ cap[0], -1, 1)) <= cap[1] + 1e-12 for v in here.cvertices)
    assert _apart(cap, _cap(far)) and _apart(_cap(far), cap)
    assert not _apart(cap, _cap(near))  # they overlap: the intersection decides
    # The same corners the other way round: the polygon is the rest of the
    # sphere, which no circle under a hemisphere holds.
    inside_out = SphPolygon(np.radians(np.array([(8.0, 62.0), (8.0, 58.0), (12.0, 58.0), (12.0, 62.0)])))
    assert _cap(inside_out) is None and not _apart(None, _cap(far))


def test_a_table_read_without_its_geodata_takes_no_granule():
    from waitd.decide.facts import FileFact
    from waitd.spool.gather import Gathering

    opts, _ = options.parse([f"pattern={PATTERN}", "area=scandinavia"])
    assert opts.group is not None
    gathering = Gathering.of(opts.group, "t", None)
    name = granules(EVENING, 1)[0]
    why = gathering.filed(FileFact(1, name, 1, 1, 1), opts.fields(name, "/in", "t") or {})
    assert why is not None and "without the areas and orbital elements" in why
    assert gathering.index.groups == {}


def test_a_publish_only_record_of_several_areas_counts_its_publications():
    """--metrics: a record `- area=A` of a line `- ... area=A,B` publishes."""
    pytest.importorskip("prometheus_client")
    from waitd.formats import events as ev
    from waitd.sinks.metrics import Metrics

    metrics = Metrics("127.0.0.1", 0)
    try:
        for process in ("-", "- area=baltic", "/bin/g area=baltic"):
            metrics.observe(ev.Ready("id", 0.0, ev.About(1, "x", None, process)))
        assert metrics.registry.get_sample_value("waitd_published_total", {"record": "1", "telem": "x"}) == 2
    finally:
        metrics.server.shutdown()
