# SPDX-License-Identifier: MIT
"""Regions: how soon a pass's group runs, and the CPU to place one granule.

The data are the tests' (tests/data/regions: real Metop-C elements of
2024-06-17, a Scandinavian area) and ten Metop-C passes over the area
from that evening to the next afternoon, three-minute AVHRR granules.

Latency: the real daemon with a record `area=scandinavia`; for each pass,
a granule just before it (off the area), then its granules but the last,
each written under a dot-name and renamed in; once the pass's group is
open (waitd.status names it), its last granule is renamed in, and the
figure is from that rename to its handler's start (the `at=` of the
status 0 lines), p50 and max over the passes.

CPU: in this process, the same granules, in the same order, placed by
waitd's `RegionIndex` and by pytroll-collectors' RegionCollector (the
peer), each timed with the process's CPU clock: the first granule of a
pass (which predicts the pass), the others of the pass, the granule just
before the pass (off the area, but near it) and one half an orbit later
(far from it); the collector draws a swath for each of its granules it
has not predicted, waitd for each it has not seen the like of, and skips
the polygons' intersection for a swath whose bounding circle misses the
area's.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from pathlib import Path

from bench.common import Options, Proc, Report, percentile, start_times, wait_for, waitd_argv, workdir, write_table

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "regions"
PATTERN = "{platform_name}_{sensor}_{start_time:%Y%m%d%H%M%S}_{end_time:%Y%m%d%H%M%S}.l1b"
STEP = datetime.timedelta(minutes=3)
# Metop-C over the area: each pass's first granule and how many granules it has.
PASSES = [
    ("2024-06-17T18:48", 3),
    ("2024-06-17T20:30", 3),
    ("2024-06-18T06:54", 3),
    ("2024-06-18T08:36", 3),
    ("2024-06-18T10:15", 3),
    ("2024-06-18T11:54", 3),
    ("2024-06-18T13:36", 2),
    ("2024-06-18T15:12", 2),
    ("2024-06-18T16:51", 2),
    ("2024-06-17T22:15", 1),
]


def _name(start: datetime.datetime) -> str:
    return f"Metop-C_avhrr_{start:%Y%m%d%H%M%S}_{start + STEP:%Y%m%d%H%M%S}.l1b"


def _passes(opts: Options) -> list[list[str]]:
    """Each pass's names: the granule before it, then its own."""
    chosen = PASSES[:3] if opts.quick else PASSES
    out = []
    for first, n in chosen:
        start = datetime.datetime.fromisoformat(first)
        out.append([_name(start + k * STEP) for k in range(-1, n)])
    return out


def run(opts: Options, report: Report) -> None:
    try:
        import pytroll_collectors.region_collector  # noqa: F401
        import trollsched  # noqa: F401
    except ImportError as exc:
        report.say(f"regions: skipped: {exc.name} is not installed (pip install 'waitd[regions]' pytroll-collectors)")
        return
    _latency(opts, report)
    _cpu(opts, report)


def _latency(opts: Options, report: Report) -> None:
    passes = _passes(opts)
    with workdir("regions") as root:
        passdir = root / "pass"
        spool = passdir / "in"
        spool.mkdir(parents=True)
        (passdir / "waitd.conf").write_text(f"[regions]\nareas = {DATA / 'areas.yaml'}\ntle = {DATA}\n")
        write_table(passdir, [f"x in *.l1b /bin/true 0 -1 0 pattern={PATTERN} area=scandinavia timeliness=86400"])
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
        last: dict[str, float] = {}
        try:
            wait_for(lambda: (passdir / "waitd.status").exists(), 60, "waitd to start")
            for names in passes:
                *before, final = names
                for name in before:
                    _deliver(spool, name)
                first = datetime.datetime.strptime(names[1].split("_")[2], "%Y%m%d%H%M%S")
                if len(names) > 2:
                    gid = f"pass={first:%Y%m%dT%H%M%S}"
                    wait_for(lambda: gid in (passdir / "waitd.status").read_text(), 30, "the pass's group open")  # noqa: B023
                last[final] = _deliver(spool, final)
                wait_for(lambda: str(spool / final) in start_times(passdir), 30, "the pass's run")  # noqa: B023
        finally:
            proc.stop()
        starts = start_times(passdir)
    latencies = sorted((starts[str(spool / name)] - at) * 1000 for name, at in last.items())
    p50 = percentile(latencies, 0.5)
    report.say(f"  latencies (ms): {' '.join(f'{x:.2f}' for x in latencies)}")
    report.say(
        f"regions: {len(passes)} Metop-C passes over an area; last granule of a pass to handler start: "
        f"p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    report.check("regions: last granule to start, p50", f"{p50:.1f} ms", "< 10 ms", p50 < 10)


def _deliver(spool: Path, name: str) -> float:
    tmp = spool / f".{name}.tmp"
    tmp.write_bytes(b"x")
    at = time.time()
    os.rename(tmp, spool / name)
    return at


def _cpu(opts: Options, report: Report) -> None:
    from pyresample import parse_area_file
    from pytroll_collectors.region_collector import RegionCollector

    from waitd.config import geodata, options
    from waitd.decide.regions import RegionIndex

    os.environ["TLES"] = str(DATA / "weather.tle")  # the collector's elements: never the network
    geo, problem = geodata._read(str(DATA / "areas.yaml"), str(DATA))
    assert geo is not None, problem
    opts_, _ = options.parse([f"pattern={PATTERN}", "area=scandinavia"])
    assert opts_.group is not None
    index = RegionIndex(opts_.group, "x", geo)
    collector = RegionCollector(
        parse_area_file(str(DATA / "areas.yaml"), "scandinavia")[0],
        timeliness=datetime.timedelta(days=1),
        timeliness_from_arrival=True,
    )
    mine: dict[str, list[float]] = {"first": [], "member": [], "off": [], "far": []}
    peer: dict[str, list[float]] = {"first": [], "member": [], "off": [], "far": []}
    for names in _passes(opts):
        far = _name(datetime.datetime.strptime(names[0].split("_")[2], "%Y%m%d%H%M%S") + 17 * STEP)
        for k, name in enumerate([*names, far]):
            kind = "off" if k == 0 else "first" if k == 1 else "far" if name == far else "member"
            fields = opts_.fields(name, "/in", "x") or {}
            t = time.process_time()
            index.add(name, fields, 0)
            mine[kind].append(time.process_time() - t)
            meta = {k: fields[k] for k in ("platform_name", "sensor", "start_time", "end_time")}
            t = time.process_time()
            if collector({**meta, "uri": name, "uid": name}) is None and k == len(names) - 1 and collector.granules:
                collector.finish()  # a pass of one granule: its timeout
            peer[kind].append(time.process_time() - t)
    for kind, what in (
        ("first", "a pass's first granule"),
        ("member", "a predicted granule"),
        ("off", "just off the area"),
        ("far", "half an orbit away"),
    ):
        if not mine[kind]:
            continue
        ms, theirs = statistics.mean(mine[kind]) * 1000, statistics.mean(peer[kind]) * 1000
        report.say(f"regions: CPU to place {what}: waitd {ms:.2f} ms, region collector {theirs:.2f} ms (mean)")
    ms = statistics.mean(mine["member"]) * 1000
    report.check("regions: CPU a predicted granule", f"{ms:.2f} ms", "< 1 ms", ms < 1)
