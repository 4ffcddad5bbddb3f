# SPDX-License-Identifier: MIT
"""Unit tests of waitd.table: parsing incoming(5), activation, name templates."""

from __future__ import annotations

import ctypes
import locale
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from waitd.config import table
from waitd.config.errors import TableError
from waitd.config.wildcard import CLASSES

PASS = "/pass"
ENV = {"HOME": "/home/op", "SPOOL": "/data/spool", "EMPTY": ""}
GOOD = "telem in * handler 30 5 24"

KNOWN = (
    "jobs, timeout, retries, retry, key, pattern, done, topic, critical, wanted, all, timeliness, "
    "tolerance, slot, vary, claim, next, out-limit, out-wait, run, fields, area, duration, sensor"
)


def parse(text: str, env: dict[str, str] | None = None) -> tuple[tuple[table.Record, ...], list[TableError]]:
    return table.parse(text, "incoming", PASS, ENV if env is None else env)


def one(line: str, env: dict[str, str] | None = None) -> table.Record:
    records, errors = parse(line + "\n", env)
    assert errors == []
    (record,) = records
    return record


def error(line: str, env: dict[str, str] | None = None) -> str:
    records, errors = parse(line + "\n", env)
    assert records == ()
    (err,) = errors
    assert str(err).startswith("incoming:1: ")
    return err.what


# -- parse: structure ---------------------------------------------------------


def test_good_line_gives_every_field() -> None:
    r = one("gps  /data/gps  *.dat  /opt/bin/ingest  30.5  5  24")
    assert r == table.Record(
        number=1,
        line=1,
        telem="gps",
        directory="/data/gps",
        template="*.dat",
        process="/opt/bin/ingest",
        wait_s=30.5,
        keep=5,
        too_old_h=24.0,
    )


def test_comments_blank_lines_and_tabs() -> None:
    text = "# a comment\n\n   \n\t# indented comment\ngps\t/a\t*\th\t0\t-1\t0\n  \n"
    (r,), errors = parse(text)
    assert errors == []
    assert (r.number, r.line, r.directory, r.keep, r.too_old_h) == (1, 5, "/a", -1, 0.0)


def test_hash_inside_a_field_is_not_a_comment() -> None:
    assert one("t /a #* h 0 0 0").template == "#*"


def test_crlf_line_endings() -> None:
    records, errors = parse("a /a * h 0 0 0\r\nb /b * h 0 0 0\r\n")
    assert errors == []
    assert [(r.telem, r.line) for r in records] == [("a", 1), ("b", 2)]


def test_records_numbered_in_file_order_counting_records_only() -> None:
    text = "# head\na /a * h 0 0 0\n\n# note\nb /b * h 0 0 0\nc /c * h 0 0 0\n"
    records, errors = parse(text)
    assert errors == []
    assert [(r.telem, r.number, r.line) for r in records] == [("a", 1, 2), ("b", 2, 5), ("c", 3, 6)]


def test_a_bad_line_still_takes_its_record_number() -> None:
    # So that fixing it does not shift the numbers (and log files) of the
    # records after it.
    text = "a /a * h 0 0 0\nbad line\nc /c * h 0 0 0\n"
    records, errors = parse(text)
    assert [(r.telem, r.number) for r in records] == [("a", 1), ("c", 3)]
    assert [(e.line, e.what) for e in errors] == [(2, "expected 7 fields, got 2")]


def test_every_error_is_reported_in_line_order() -> None:
    text = "x\n# c\na /a * h 0 0 0\ny y\nz /z * h nan 0 0\n"
    records, errors = parse(text)
    assert [r.telem for r in records] == ["a"]
    assert [e.line for e in errors] == [1, 4, 5]
    assert all(str(e).startswith(f"incoming:{e.line}: ") for e in errors)


def test_every_error_of_a_line_is_reported_in_field_order() -> None:
    records, errors = parse("t /a * h x -2 0\nu $NOPE a/b h 1e3 +2 nan x=1 extra\n")
    assert records == ()
    assert [(e.line, e.what) for e in errors] == [
        (1, "wait-until-age 'x' is not a plain decimal number such as 30 or 0.5"),
        (1, "keep-after '-2' is not a whole number such as 5, or -1 (keep every file)"),
        (2, "incoming-dir '$NOPE': $NOPE is not set"),
        (2, "name-template 'a/b' must not contain '/': it matches names in one directory"),
        (2, "wait-until-age '1e3' is not a plain decimal number such as 30 or 0.5"),
        (2, "keep-after '+2' is not a whole number such as 5, or -1 (keep every file)"),
        (2, "hours-too-old 'nan' is not a plain decimal number such as 30 or 0.5"),
        (2, f"unknown option 'x' (known: {KNOWN})"),
        (2, "expected 7 fields, got 9 (extra field 'extra' is not key=value)"),
    ]


def test_too_few_fields_is_one_error() -> None:
    # Which field is which is unknown: the others are not judged.
    _, errors = parse("t /a * h x -2\n")
    assert [e.what for e in errors] == ["expected 7 fields, got 6"]


def test_summary_counts_errors_and_lines() -> None:
    _, errors = parse("t /a * h x -2 0\nok /a * h 0 0 0\nu /a * h 0 0 nan\n")
    assert table.summary(errors) == "3 error(s) on 2 line(s)"
    assert table.summary([TableError("incoming", 0, "cannot read table: No such file or directory")]) == "1 error(s)"


def test_line_numbers_count_newlines_only() -> None:
    # A form feed or a Unicode line separator inside a line must not shift
    # the line numbers an editor shows.
    text = "a /a * h 0 0 0\x0c\nb /b \u2028 h\nc /c * h 0 0 0\n"
    records, errors = parse(text)
    assert [(r.telem, r.line) for r in records] == [("a", 1), ("c", 3)]
    assert [(e.line, e.what) for e in errors] == [(2, "expected 7 fields, got 3")]
    assert [r.number for r in records] == [1, 3]


def test_empty_table() -> None:
    assert parse("") == ((), [])
    assert parse("# nothing\n\n") == ((), [])


# -- parse: directories -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("/abs/dir", "/abs/dir"),
        ("/abs/dir/", "/abs/dir"),
        ("/abs//x/../dir", "/abs/dir"),
        ("rel", "/pass/rel"),
        ("rel/sub", "/pass/rel/sub"),
        (".", "/pass"),
        ("../up", "/up"),
        ("~", "/home/op"),
        ("~/in", "/home/op/in"),
        ("$SPOOL", "/data/spool"),
        ("$SPOOL/gps", "/data/spool/gps"),
        ("${SPOOL}gps", "/data/spoolgps"),
        ("${SPOOL}/a/$HOME", "/data/spool/a/home/op"),
        ("$EMPTY/x", "/x"),
        ("$EMPTY", "/pass"),
        ("sub$EMPTY", "/pass/sub"),
    ],
)
def test_directory_expansion(written: str, expanded: str) -> None:
    assert one(f"t {written} * h 0 0 0").directory == expanded


def test_tilde_user_expands_through_passwd() -> None:
    import pwd

    entry = pwd.getpwuid(os.getuid())
    assert one(f"t ~{entry.pw_name}/in * h 0 0 0").directory == os.path.normpath(entry.pw_dir + "/in")


def test_tilde_unknown_user_is_an_error() -> None:
    what = error("t ~no_such_user_waitd/in * h 0 0 0")
    assert "no user 'no_such_user_waitd'" in what


@pytest.mark.parametrize("written", ["$NOPE", "${NOPE}", "/a/$NOPE/b", "${NOPE}x"])
def test_unset_variable_is_an_error_naming_it(written: str) -> None:
    what = error(f"t {written} * h 0 0 0")
    assert "$NOPE is not set" in what
    assert what.startswith("incoming-dir ")


def test_variables_come_from_the_given_env_not_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_IN_OS", "/x")
    assert "$ONLY_IN_OS is not set" in error("t $ONLY_IN_OS * h 0 0 0")
    assert one("t $ONLY_IN_OS * h 0 0 0", {"ONLY_IN_OS": "/y"}).directory == "/y"


# -- parse: numbers and options ------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "wait_s", "keep", "too_old_h"),
    [
        ("0 0 0", 0.0, 0, 0.0),
        ("1.5 -1 0.25", 1.5, -1, 0.25),
        ("30 100 720", 30.0, 100, 720.0),
        ("007 010 0.0", 7.0, 10, 0.0),
        ("0.000001 0 0.0001", 0.000001, 0, 0.0001),
        ("31536000 1000000000 876000", 31536000.0, 1000000000, 876000.0),  # the maxima
        ("31536000.000 0 876000.0", 31536000.0, 0, 876000.0),
    ],
)
def test_numbers(fields: str, wait_s: float, keep: int, too_old_h: float) -> None:
    r = one(f"t /a * h {fields}")
    assert (r.wait_s, r.keep, r.too_old_h) == (wait_s, keep, too_old_h)


PLAIN = "is not a plain decimal number such as 30 or 0.5"
WHOLE = "is not a whole number such as 5, or -1 (keep every file)"


# float() and int() take all of these; the table takes plain decimals only.
@pytest.mark.parametrize(
    "text",
    ["1e3", "1E3", "1e300", "1_000", "+2", "-0", "-1", "-0.0", "nan", "NaN", "inf", "-infinity", "0x10", ".5", "5.",
     "1.2.3", "1,5", "x", "24h", "\u0663", "1\u0660", "\uff11", "\u00b2", "\u2164", "0.\u0663"],
)  # fmt: skip
def test_wait_and_hours_take_plain_decimals_only(text: str) -> None:
    assert error(f"t /a * h {text} 0 0") == f"wait-until-age {text!r} {PLAIN}"
    assert error(f"t /a * h 0 0 {text}") == f"hours-too-old {text!r} {PLAIN}"


@pytest.mark.parametrize(
    "text", ["1e3", "1_000", "+2", "-0", "-2", "--1", "-01", "1.5", "1.0", "nan", "inf", "x", "\u0663", "\uff11"]
)
def test_keep_takes_digits_or_minus_one_only(text: str) -> None:
    assert error(f"t /a * h 0 {text} 0") == f"keep-after {text!r} {WHOLE}"


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("t /a * h 31536000.5 0 0", "wait-until-age '31536000.5' is out of range: 0 to 31536000 seconds (365 days)"),
        ("t /a * h 31536001 0 0", "wait-until-age '31536001' is out of range: 0 to 31536000 seconds (365 days)"),
        ("t /a * h 0 0 876000.01", "hours-too-old '876000.01' is out of range: 0 to 876000 hours (100 years)"),
        ("t /a * h 0 1000000001 0", "keep-after '1000000001' is out of range: -1, or 0 to 1000000000"),
        # past float precision, and past int()'s 4300 digits: still exact
        (
            "t /a * h 31536000.00000000000000000001 0 0",
            "wait-until-age '31536000.00000000000000000001' is out of range",
        ),
        (f"t /a * h 0 {'9' * 5000} 0", f"keep-after '{'9' * 5000}' is out of range"),
        (f"t /a * h {'9' * 400}.5 0 0", f"wait-until-age '{'9' * 400}.5' is out of range"),
    ],
)
def test_numbers_out_of_range_say_the_range(line: str, what: str) -> None:
    assert error(line).startswith(what)


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("t /a * h", "expected 7 fields, got 4"),
        ("t", "expected 7 fields, got 1"),
        ("t /a * h 0 0", "expected 7 fields, got 6"),
        ("t /a sub/* h 0 0 0", "name-template 'sub/*' must not contain '/'"),
        ("t /a * h 0 0 0 extra", "expected 7 fields, got 8 (extra field 'extra' is not key=value)"),
        ("t /a * h 0 0 0 speed=5", f"unknown option 'speed' (known: {KNOWN})"),
        ("t /a * h 0 0 0 =5", f"unknown option '' (known: {KNOWN})"),
    ],
)
def test_errors_name_file_line_and_what(line: str, what: str) -> None:
    assert error(line).startswith(what)


def test_decimal_is_the_one_rule_for_numbers() -> None:
    assert table.decimal("0.01", 86400, "seconds", Decimal("0.01")) == 0.01
    assert table.decimal("86400", 86400, "seconds") == 86400.0
    with pytest.raises(ValueError, match=r"^'0.009' is out of range: 0.01 to 86400 seconds$"):
        table.decimal("0.009", 86400, "seconds", Decimal("0.01"))
    with pytest.raises(ValueError, match=r"^'1e9' is not a plain decimal number"):
        table.decimal("1e9", 86400, "seconds")


def test_error_carries_path_and_line() -> None:
    _, errors = table.parse("\n\nt /a * h\n", "/etc/waitd/incoming", PASS, ENV)
    (err,) = errors
    assert (err.path, err.line) == ("/etc/waitd/incoming", 3)
    assert str(err) == "/etc/waitd/incoming:3: expected 7 fields, got 4"


# -- read -------------------------------------------------------------------------------


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "incoming"
    path.write_text("# t\nt in * h 0 0 0\n")
    records, errors = table.read(str(path), str(tmp_path), ENV)
    assert errors == []
    assert records[0].directory == str(tmp_path / "in")


def test_read_missing_file_is_one_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope")
    records, errors = table.read(path, str(tmp_path), ENV)
    assert records == ()
    (err,) = errors
    assert str(err).startswith(f"{path}: cannot read table: ")  # no line for the file as a whole
    assert "No such file or directory" in str(err)


def test_read_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "incoming"
    path.write_bytes(b"# ok\nt /a * h 0 0 0\nt /b\xff * h 0 0 0\n# caf\xe9\nu /c * h 0 0 0\nv /d * h x 0 0\n")
    records, errors = table.read(str(path), str(tmp_path), ENV)
    # Every line is judged: a bad byte costs its own line only, and the
    # line keeps its record number.
    assert [(r.telem, r.number) for r in records] == [("t", 1), ("u", 3)]
    assert [str(e) for e in errors] == [
        f"{path}:3: not valid UTF-8 text",
        f"{path}:4: not valid UTF-8 text",
        f"{path}:6: wait-until-age 'x' is not a plain decimal number such as 30 or 0.5",
    ]


# -- hypothesis: parse never raises, every error has PATH:LINE: ------------------------

_FIELD = st.one_of(
    st.sampled_from(
        ["t", "/a", "*", "h", "0", "-1", "1.5", "nan", "1e3", "+2", "\u0663", "31536001", "~", "$HOME", "${X}", "$"]
        + ["a=b", "#", "/", "[[:foo:]]", "a\\"]
    ),
    st.text(max_size=6),
)
_LINE = st.one_of(
    st.text(max_size=40),
    st.lists(_FIELD, max_size=9).map(" ".join),
)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(_LINE, max_size=8))
@example(["~\x00x /a * h 0 0 0"])
@example(["t ~\udcff * h 0 0 0"])
def test_parse_never_raises(lines: list[str]) -> None:
    text = "\n".join(lines)
    records, errors = table.parse(text, "tbl", PASS, ENV)
    numbers = [r.number for r in records]
    assert numbers == sorted(set(numbers))
    for err in errors:
        assert isinstance(err, TableError)
        assert str(err).startswith(f"tbl:{err.line}: ")
        assert 1 <= err.line <= text.count("\n") + 1
    for r in records:
        assert os.path.isabs(r.directory)
        assert "/" not in r.template
        assert 0 <= r.wait_s <= table.MAX_WAIT_S and 0 <= r.too_old_h <= table.MAX_TOO_OLD_H
        assert -1 <= r.keep <= table.MAX_KEEP
        table.matcher(r.template)  # every template the table accepts compiles


# -- matcher ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "name", "matches"),
    [
        ("*", "a", True),
        ("*", "", True),
        ("*.dat", "x.dat", True),
        ("*.dat", "x.dat.tmp", False),
        ("*.dat", "x.DAT", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("[ab]x", "bx", True),
        ("[ab]x", "cx", False),
        ("[a-c]", "b", True),
        ("[a-c]", "d", False),
        ("[!a-c]", "d", True),
        ("[!a-c]", "b", False),
        ("[^a-c]", "d", True),
        ("[^a-c]", "b", False),
        ("[]]", "]", True),
        ("[!]]", "]", False),
        ("[!]]", "a", True),
        ("[a-]", "-", True),
        ("[-a]", "-", True),
        ("[a-c-e]", "-", True),
        ("[a-c-e]", "d", False),
        ("[a-c-e]", "e", True),
        ("[", "[", True),
        ("[a", "[a", True),
        ("[!", "[!", True),
        ("[]", "[]", True),
        ("[[]", "[", True),
        ("[b-a]", "a", False),
        ("[b-a]", "b", False),
        ("[!b-a]", "z", True),
        ("[b-ax]", "x", True),
        ("[a&&b]", "&", True),
        ("[a||b]", "|", True),
        ("[a~~b]", "~", True),
        ("[a--]", "a", False),
        ("a[--/]", "a.", True),
        ("[+--]", ",", True),
        ("[\\]", "\\", False),  # `\]` is an escaped `]`: the bracket is unclosed
        ("[\\]", "[]", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("\\?", "?", True),
        ("\\[a]", "[a]", True),
        ("(a|b)+", "(a|b)+", True),
        ("a.b", "axb", False),
        ("$^", "$^", True),
        ("*", "line\nbreak", True),
        ("a?b", "a\nb", True),
        ("[!x]", "\n", True),
        ("*", "caf\udce9", True),
        ("caf?", "caf\udce9", True),
        ("caf\udce9*", "caf\udce9.dat", True),
        ("*", ".hidden", False),
        ("?hidden", ".hidden", False),
        ("[.]hidden", ".hidden", False),
        ("[!a]hidden", ".hidden", False),
        (".*", ".hidden", True),
        (".*", ".", True),
        (".h*", ".hidden", True),
        ("\\.h*", ".hidden", True),
        (".*.tmp", ".x.tmp", True),
        ("*.tmp", ".x.tmp", False),
        ("a*", "a.b", True),
        ("*b", "a.b", True),
        ("[?-.!]", "?", False),  # a reversed range matches nothing, as in the shell
        ("[?-.!]", "!", True),
        # POSIX classes, with the C locale's ASCII meaning
        ("[[:digit:]]*.d", "1.d", True),
        ("[[:digit:]]*.d", "x.d", False),
        ("[[:digit:]]", "\u0663", False),  # an Arabic-Indic digit is not a digit in the C locale
        ("[[:alpha:]]", "\u00e9", False),
        ("[![:space:]]", "a", True),
        ("[![:space:]]", "\t", False),
        ("[^[:space:]]", " ", False),
        ("[[:alpha:][:digit:]_]", "_", True),
        ("[[:alpha:]-]", "-", True),
        ("[[:upper:]x]", "x", True),
        ("[[:punct:]]x", ".x", False),  # a leading dot is matched by a literal dot only
        ("[[:alpha:]", "[:", True),  # the class takes the first `]`: the `[` is unclosed
        ("[[:alpha:]", "a", False),
        ("[[:alpha:]]]", "a]", True),
        # backslash escapes, inside and outside brackets
        ("[a\\-z]", "-", True),
        ("[a\\-z]", "b", False),
        ("[a\\-z]", "z", True),
        ("[\\]]", "]", True),
        ("[\\!a]", "!", True),
        ("[\\!a]", "b", False),
        ("[a-\\z]", "m", True),
        ("[\\a-z]", "m", True),
        ("[\\[]", "[", True),
        ("\\[a]", "[a]", True),
        ("x\\\\", "x\\", True),
        ("[[]", "[", True),
        ("[[", "[[", True),
        ("[a-c]]", "b]", True),
        ("[]a]", "]", True),
        ("[!]a]", "]", False),
        ("[]-a]", "_", True),
    ],
)
def test_matcher(template: str, name: str, matches: bool) -> None:
    assert table.matcher(template)(name) is matches
    # Many names at once (a first listing), asked in C: the same answers.
    assert table.matcher(template).select([name, name]) == ([name, name] if matches else [])


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("a\\", "ends in a lone backslash"),
        ("*\\", "ends in a lone backslash"),
        ("[a\\", "ends in a lone backslash"),
        ("[a-\\", "ends in a lone backslash"),
        ("[a-", "ends in an open range"),
        ("[[:foo:]]", "has an unknown character class [:foo:]"),
        ("[[::]]", "has an unknown character class [::]"),
        ("[[:ALPHA:]]", "has '[:' inside brackets that is not a character class"),
        ("[[:]", "has '[:' inside brackets that is not a character class"),
        ("[[=a=]]", "has '[=' inside brackets: an equivalence class is not supported"),
        ("[[.a.]]", "has '[.' inside brackets: a collating symbol is not supported"),
        ("[a[=b]", "has '[='"),
        ("[[.]*", "has '[.'"),
        ("[a-[:alpha:]]", "has a range ending in '[' followed by ':'"),
        ("[a-[.b.]]", "has a range ending in '[' followed by '.'"),
        ("a\0b", "has a NUL character"),
    ],
)
def test_templates_fnmatch_cannot_express_are_refused(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        table.matcher(template)
    assert error(f"t /a {template} h 0 0 0").startswith(f"name-template {template!r} {why}")


def test_matcher_does_not_backtrack_without_end() -> None:
    # Each `*` but the last takes the shortest stretch once, as glibc does:
    # a long name that almost matches must not take exponential time.
    match = table.matcher("*a*a*a*a*a*a*a*a*b")
    assert not match("a" * 250)
    assert match("a" * 250 + "b")


# -- the ground truth: glibc's own fnmatch(3) ------------------------------------------------

_FNM_PERIOD = 4
_LIBC = ctypes.CDLL(None)
_LIBC.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
_LIBC.fnmatch.restype = ctypes.c_int
_TOKENS = [*"[]!^-\\*?.:ab=", "[:", ":]", "[!", "[^", *(f"[:{c}:]" for c in CLASSES), "[:foo:]", "[=a=]", "[.a.]"]
_NAMES = "[]!^-\\*?.:=abzAZ09_ \t\n\x7f"


def glibc_fnmatch(template: str, name: str) -> bool:
    """fnmatch(template, name, FNM_PERIOD) in the C locale, from the C library itself."""
    old = locale.setlocale(locale.LC_ALL)
    locale.setlocale(locale.LC_ALL, "C")
    try:
        return _LIBC.fnmatch(template.encode("ascii"), name.encode("ascii"), _FNM_PERIOD) == 0
    finally:
        locale.setlocale(locale.LC_ALL, old)


@pytest.mark.skipif("POSIXLY_CORRECT" in os.environ, reason="glibc then reads [^...] as a set with ^ in it")
@settings(max_examples=examples(600), deadline=None)
@given(
    template=st.lists(st.sampled_from(_TOKENS), max_size=8).map("".join),
    names=st.lists(st.text(_NAMES, max_size=6), min_size=1, max_size=6),
)
@example(template="[[:digit:]]*.d", names=["1.d", "a.d", ".1.d"])
@example(template="[a\\-z]", names=["a", "-", "z", "b"])
@example(template="[\\]]", names=["]", "\\", "\\]"])
@example(template="[!]", names=["[!]", "!", "a"])
@example(template="[xa-[:alpha:]]", names=["x", "x]"])  # glibc reads the bracket two ways: refused
@example(template="[[", names=["[[", "["])
@example(template="[a-c-e]", names=["-", "d", "e"])
@example(template="*[!a]", names=[".b", "b", "ab"])
def test_matcher_agrees_with_glibc_fnmatch(template: str, names: list[str]) -> None:
    try:
        match = table.matcher(template)
    except ValueError:
        return  # refused when the table is read; see test_templates_fnmatch_cannot_express_are_refused
    for name in [*names, template.replace("\\", "")]:
        assert match(name) is glibc_fnmatch(template, name), (template, name)


@settings(max_examples=200, deadline=None)
@given(st.text(_NAMES + "&~|", max_size=10))
def test_matcher_compiles_or_refuses_any_template(template: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            match = table.matcher(template)
        except ValueError:
            return
    match("a")
    match(".a")


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=10))
def test_a_literal_name_matches_itself(name: str) -> None:
    assume("\0" not in name)
    escaped = re.sub(r"([*?\[\\])", r"\\\1", name)
    assert table.matcher(escaped)(name)


@settings(max_examples=examples(200), deadline=None)
@given(st.text(alphabet="-ab /=", max_size=8))
@example("-")
@example("- area=A")
@example("-x")
@example("/bin/-")
@example("-  ")
def test_publish_only_is_the_command_dash(process: str) -> None:
    """`Record.publish_only` (asked each turn, without the split of
    `command`: issue 21) says what `command == "-"` says."""
    record = table.Record(1, 1, "t", "/in", "*", process, 0.0, 0, 0.0)
    assert record.publish_only == (record.command == table.PUBLISH)
