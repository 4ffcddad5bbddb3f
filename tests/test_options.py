# SPDX-License-Identifier: MIT
"""Record options: values, defaults, errors, FORMATs and the pattern's fields."""

from __future__ import annotations

import datetime

import pytest

from waitd.config import options
from waitd.config.options import Options

KNOWN = (
    "jobs, timeout, retries, retry, key, pattern, done, topic, critical, wanted, all, timeliness, "
    "tolerance, slot, vary, claim, next, out-limit, out-wait, run, fields, area, duration, sensor"
)


def test_defaults_are_the_classic_record():
    assert options.parse([]) == (Options(), [])
    o = Options()
    assert (o.jobs, o.timeout_s, o.retries, o.retry_s, o.key, o.pattern, o.done, o.topic) == (
        1,
        None,
        0,
        60.0,
        None,
        None,
        None,
        None,
    )


def test_every_option():
    o, problems = options.parse(
        ["jobs=3", "timeout=1.5", "retries=2", "retry=10", "key={stem}", "done={name}.done", "topic=/a\\040b"]
    )
    assert problems == []
    assert o == Options(3, 1.5, 2, 10.0, "{stem}", None, "{name}.done", "/a b")


@pytest.mark.parametrize(
    "item, problem",
    [
        ("jobs=0", "option jobs=0: expected a whole number from 1 to 1000"),
        ("jobs=1001", "option jobs=1001: expected a whole number from 1 to 1000"),
        ("jobs=+2", "option jobs=+2: expected a whole number from 1 to 1000"),
        ("jobs=", "option jobs=: expected a whole number from 1 to 1000"),
        ("retries=1e3", "option retries=1e3: expected a whole number from 0 to 1000"),
        ("timeout=0", "option timeout=0: expected more than 0 and at most 31536000 seconds"),
        ("timeout=nan", "option timeout=nan: expected a plain decimal number of seconds such as 30 or 0.5"),
        ("retry=3601", "option retry=3601: expected more than 0 and at most 3600 seconds"),
        ("key={", "option key={: Single '{' encountered in format string"),
        ("key={0}", "option key={0}: {0}: fields are named, such as {name}"),
        ("key={nope}", "option key={nope}: no field {nope} in (no pattern=) name, stem, suffix, dir, telem"),
        ("done=", "option done=: empty"),
        ("topic=", "option topic=: empty"),
        (
            "colour=red",
            f"unknown option 'colour' (known: {KNOWN})",
        ),
        ("extra", "'extra' is not key=value"),
        ("key={stem:256}", "option key={stem:256}: {stem}: width 256 is more than 255 (the most a file name holds)"),
        (
            "key={stem:.99999%}",
            "option key={stem:.99999%}: {stem}: width 99999 is more than 255 (the most a file name holds)",
        ),
        (
            "done={stem:{name}}",
            "option done={stem:{name}}: {stem}: a format specification may not hold another field ({name})",
        ),
        (
            "pattern={t:%Y%9999999m}.d",
            "option pattern={t:%Y%9999999m}.d: {t}: width 9999999 is more than 255 (the most a file name holds)",
        ),
        ("pattern={n:n}.d", "option pattern={n:n}.d: trollsift cannot use it: KeyError: 'n'"),
    ],
)
def test_bad_values_name_the_option(item, problem):
    o, problems = options.parse([item])
    assert problems == [problem]
    # A bad value is left out; a value good alone but not with the others is kept.
    assert o == (Options(key="{nope}") if item == "key={nope}" else Options())


def test_every_problem_in_field_order_and_repeats():
    _, problems = options.parse(["jobs=0", "jobs=2", "x", "timeout=5", "timeout=6"])
    assert problems == [
        "option jobs=0: expected a whole number from 1 to 1000",
        "option 'jobs' given twice",
        "'x' is not key=value",
        "option 'timeout' given twice",
    ]


def test_formats_may_name_the_patterns_fields():
    pattern = "pattern={platform}_{start_time:%Y%m%d_%H%M}_{segment:3d}.dat"
    assert options.parse([pattern, "key={platform}{start_time:%Y}", "done={stem}.ok"])[1] == []
    # Widths up to a file name's, and digits that are a time format's text.
    assert options.parse(["pattern={p:_<255s}{t:%Y0101%H}.d", "key={p:0>255}{t:%H00}"])[1] == []
    _, problems = options.parse([pattern, "key={channel}"])
    assert problems == [
        "option key={channel}: no field {channel} in the pattern's fields or name, stem, suffix, dir, telem"
    ]


def test_fields_of_a_name():
    o = options.parse(["pattern={platform}_{start_time:%Y%m%d_%H%M}_{segment:3d}.dat"])[0]
    f = o.fields("noaa19_20260101_1200_007.dat", "/in", "hrpt")
    assert f is not None
    assert f["platform"] == "noaa19" and f["segment"] == 7
    assert f["start_time"] == datetime.datetime(2026, 1, 1, 12, 0)
    assert (f["name"], f["stem"], f["suffix"], f["dir"], f["telem"]) == (
        "noaa19_20260101_1200_007.dat",
        "noaa19_20260101_1200_007",
        ".dat",
        "/in",
        "hrpt",
    )
    assert o.fields("something else.dat", "/in", "hrpt") is None
    assert Options.format("{platform}-{start_time:%H}", f) == "noaa19-12"
    assert Options.format("{segment:%Y}", f) is None  # the value does not fit the format


def test_retry_delay_doubles_up_to_an_hour():
    o = Options(retry_s=10.0)
    assert [o.retry_delay_s(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert Options(retry_s=1000.0).retry_delay_s(5) == 3600
    assert Options().retry_delay_s(10_000) == 3600


def test_described_as_they_will_be_used():
    o = options.parse(["jobs=2", "topic=a\\040b"])[0]
    assert o.described() == [
        "jobs=2",
        "timeout=(none)",
        "retries=0",
        "retry=60",
        "key=(none)",
        "pattern=(none)",
        "done=(none)",
        "topic=a\\040b",
        "critical=(none)",
        "wanted=(none)",
        "all=(none)",
        "timeliness=1200",
        "tolerance=30",
        "slot=(none)",
        "vary=(none)",
        "claim=no",
        "next=(none)",
        "out-limit=(none)",
        "out-wait=10",
        "run=local",
        "fields=name",
        "area=(none)",
        "duration=(none)",
        "sensor=(none)",
    ]


def test_group_options_and_their_errors():
    hrit = "pattern=H-{platform}-{channel_name}-{segment}-{start_time:%Y%m%d%H%M}"
    o, problems = options.parse(
        [hrit, "critical=:PRO,:EPI", "wanted=VIS006:000001-000003,:PRO", "timeliness=10", "slot=15", "vary=platform"]
    )
    assert problems == []
    spec = o.group
    assert spec is not None
    assert spec.critical == {("", "PRO"), ("", "EPI")}
    assert spec.expected == {("", "PRO"), ("", "EPI"), ("VIS006", "000001"), ("VIS006", "000002"), ("VIS006", "000003")}
    assert (spec.timeliness_s, spec.slot_min, spec.vary) == (10.0, 15.0, ("platform",))
    for items, problem in [
        (["critical=:PRO"], "critical= and wanted= need pattern=: the fields of a name say its group and member"),
        (["pattern={p}_{segment}.dat", "wanted=VIS:1"], "the member lists name channel_names, but pattern= has no"),
        (["pattern={p}_{segment}.dat", "wanted=1-3"], "option wanted=1-3: '1-3' is not CHANNEL:SEGMENT"),
        (["pattern={p}_{segment}.dat", "wanted=:3-1"], "option wanted=:3-1: range '3-1' runs backwards"),
        (["pattern={p}_{segment}.dat", "wanted=:1-x"], "option wanted=:1-x: range '1-x' is not FIRST-LAST"),
        (["pattern={p}_{segment}.dat", "wanted=:1-2", "vary=q"], "option vary= names q, which pattern= does not have"),
        (["pattern={p}_{segment}.dat", "wanted=:1-2", "slot=5"], "option slot= needs a {start_time} field"),
        (["pattern={p}_{segment}.dat", "timeliness=5"], "option timeliness= is for groups"),
        (["pattern={p}_{segment}.dat", "wanted=:1", "done={name}.ok"], "done= and groups do not go together"),
    ]:
        _, found = options.parse(items)
        assert len(found) >= 1 and found[0].startswith(problem), (items, found)


def test_options_are_checked_together_even_when_one_is_bad():
    """Every problem of a line: a bad value no longer hides the checks of
    the others, and it causes none of its own."""
    _, problems = options.parse(["critical=:1", "done={name}.ok", "jobs=0"])
    assert problems == [
        "option jobs=0: expected a whole number from 1 to 1000",
        "done= and groups do not go together (a group's member is complete by its wait age)",
        "critical= and wanted= need pattern=: the fields of a name say its group and member",
    ]
    # A bad critical= makes no "timeliness= is for groups"; a bad timeout= no "needs timeout=".
    _, problems = options.parse(["pattern={a}_{segment}.d", "critical=1", "timeliness=5", "run=celery", "timeout=x"])
    assert [p.split(":")[0] for p in problems] == ["option critical=1", "option timeout=x"]
