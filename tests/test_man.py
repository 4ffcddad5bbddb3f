# SPDX-License-Identifier: MIT
"""The manual pages: lint-clean, renderable, and saying what the parsers do."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from waitd.cli import main as cli
from waitd.cli import reduce, tlogview
from waitd.worker import main as worker

MAN = Path(__file__).resolve().parent.parent / "man"
CONF = MAN.parent / "conf"
PAGES = ["waitd.8", "incoming.5", "waitd.conf.5", "tlogview.1"]
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")

needs_mandoc = pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
needs_man = pytest.mark.skipif(shutil.which("man") is None, reason="man (groff) is not installed")


def sections(page: str) -> dict[str, list[str]]:
    """The source lines of each .SH section of a page."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in (MAN / page).read_text().splitlines():
        if line.startswith(".SH "):
            current = line[4:].strip().strip('"')
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def tagged_options(lines: list[str]) -> set[str]:
    """The options named in the tags of the .TP paragraphs."""
    found: set[str] = set()
    for before, tag in zip(lines, lines[1:], strict=False):
        if before == ".TP":
            found.update(OPTION.findall(tag.replace("\\-", "-")))
    return found


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def render(page: str) -> str:
    result = subprocess.run(["mandoc", "-Tutf8", str(MAN / page)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    return re.sub(r".\x08", "", result.stdout)


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_lint_clean_and_renders(page):
    lint = subprocess.run(["mandoc", "-Tlint", "-Wwarning", str(MAN / page)], capture_output=True, text=True)
    assert lint.stdout + lint.stderr == ""
    text = render(page)
    assert "to be written" not in text
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"):
        assert f"\n{name}\n" in text, f"{page}: no {name} section"


@needs_man
@pytest.mark.parametrize("page", PAGES)
def test_man_renders_it_in_80_columns_without_a_warning(page):
    """groff, as man(1) runs it on a terminal of 80 columns, warned that a
    table of incoming(5) was wider than the line."""
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat")
    result = subprocess.run(["man", "-l", str(MAN / page)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stderr == ""


@needs_mandoc
@pytest.mark.parametrize(("page", "parser"), [("waitd.8", cli.build_parser()), ("tlogview.1", tlogview.build_parser())])
def test_options_match_the_parser(page, parser):
    documented = tagged_options(sections(page)["OPTIONS"])
    options = parser_options(parser)
    assert options - documented == set(), f"{page}: options of the parser not in OPTIONS"
    assert documented - options == set(), f"{page}: options in OPTIONS that the parser does not know"
    synopsis = set(OPTION.findall("\n".join(sections(page)["SYNOPSIS"]).replace("\\-", "-")))
    if page == "waitd.8":
        options |= parser_options(worker.build_parser())  # waitd worker: CLUSTER describes them
        options |= parser_options(reduce.build_parser())  # waitd reduce: REDUCTION describes them
    assert synopsis - options == set(), f"{page}: SYNOPSIS names unknown options"
    text = render(page)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{page}: {option} not rendered"


def test_waitd_help_and_the_worker_synopsis_name_every_option_of_waitd_worker():
    worker_options = parser_options(worker.build_parser()) - {"-h", "--help"}
    synopsis = "\n".join(sections("waitd.8")["SYNOPSIS"]).replace("\\-", "-")
    line = synopsis[synopsis.index(".B waitd worker") :]
    assert set(OPTION.findall(line)) == worker_options, "waitd(8): the synopsis of waitd worker"
    help_text = cli.build_parser().format_help()
    assert "waitd worker [" in help_text and "waitd worker --help" in help_text
    said = help_text[help_text.index("waitd worker [") :]
    assert set(OPTION.findall(said)) - {"--help"} == worker_options, "waitd --help: the usage of waitd worker"


@needs_mandoc
def test_waitd_page_has_its_sections_and_examples():
    text = render("waitd.8")
    for name in ("OPTIONS", "SIGNALS", "WHAT WAITD GUARANTEES", "SECURITY", "EXIT STATUS"):
        assert f"\n{name}\n" in text
    for signal in ("HUP", "TERM", "INT", "CONT", "ALRM"):
        assert re.search(rf"^ {{7}}{signal}\b", text, re.M), f"signal {signal} not described"
    assert "gvar /home/xtuser/incoming *.g8 gvar_incproc 60 1 4" in text
    assert "ExecStart=/usr/local/bin/waitd -f" in text and "ExecReload=/usr/local/bin/waitd -s reload" in text
    assert "postrotate" in text
    for code in "0123":
        assert re.search(rf"^ {{7}}{code}\b", text[text.index("EXIT STATUS") :], re.M)


@needs_mandoc
def test_incoming_page_documents_every_field_and_the_escaping():
    text = render("incoming.5")
    for field in (
        "telem-or-format",
        "incoming-dir",
        "name-template",
        "process-name",
        "wait-until-age",
        "keep-after",
        "hours-too-old",
    ):
        assert re.search(rf"^ {{7}}{field}$", text, re.M), f"field {field} not described"
    assert "a\\040b.g8" in text and "THE HISTORY FILE" in text
    for key in ("pid=", "exit=", "signal=", "error=", "at=", "took=", "mtime_ns="):
        assert key in text


def example_blocks(page: str) -> list[str]:
    """The text of each .EX/.EE block of a page's EXAMPLES, escapes undone."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in sections(page)["EXAMPLES"]:
        if line == ".EX":
            current = []
        elif line == ".EE" and current is not None:
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return [re.sub(r"\\[&%]", "", b).replace("\\-", "-").replace("\\e", "\\") for b in blocks]


@pytest.mark.parametrize("conf", ["waitd.service", "waitd.logrotate"])
def test_examples_show_the_conf_files_as_shipped(conf):
    """waitd(8) embeds conf/waitd.service and conf/waitd.logrotate, comments left out."""
    shipped = "\n".join(line for line in (CONF / conf).read_text().splitlines() if not line.startswith("#"))
    shipped = shipped.strip("\n")
    first = shipped.splitlines()[0]
    assert [b for b in example_blocks("waitd.8") if b.splitlines()[:1] == [first]] == [shipped]


@needs_mandoc
def test_waitd_conf_page_documents_every_key_and_its_examples_parse():
    from waitd.config import conf, confkeys

    text = render("waitd.conf.5")
    for section in (
        "   [daemon]",
        "   [sink NAME]",
        "   [celery]",
        "   [http]",
        "   [regions]",
        "EVENTS",
        "THE OUTBOX",
    ):
        assert f"\n{section}\n" in text, f"waitd.conf(5): no {section.strip()} section"
    by_type = (k for kind in confkeys.BY_TYPE.values() for k in kind)
    keys = {*confkeys.DAEMON, *confkeys.CELERY, *confkeys.HTTP, *confkeys.REGIONS, *confkeys.COMMON, *by_type}
    for key in keys:
        assert re.search(rf"(?<![\w-]){re.escape(key)} = ", text), f"waitd.conf(5): key {key} not described"
    blocks = [b for b in example_blocks("waitd.conf.5") if b.startswith("[")]
    types = set()
    for block in blocks:
        parsed, errors = conf.parse(block, "example")
        assert errors == [], block
        types.update(sink.type for sink in parsed.sinks)
    assert types == set(confkeys.SINK_TYPES), "an example for each type of sink"


@needs_mandoc
def test_waitd_conf_page_documents_every_key_of_a_source_and_an_example_of_each_type():
    from waitd.config import conf, sourceconf

    text = render("waitd.conf.5")
    assert "\n   [source NAME]\n" in text
    for key in {*sourceconf.COMMON, *(k for kind in sourceconf.BY_TYPE.values() for k in kind)}:
        assert re.search(rf"(?<![\w-]){re.escape(key)} = ", text), f"waitd.conf(5): source key {key} not described"
    types = set()
    for block in (b for b in example_blocks("waitd.conf.5") if b.startswith("[source")):
        parsed, errors = conf.parse(block, "example")
        assert errors == [], block
        types.update(source.type for source in parsed.sources)
    assert types == set(sourceconf.SOURCE_TYPES), "an example for each type of source"


# -- the examples: every table and waitd.conf shown is one waitd takes -------------

MARK = re.compile(r'^\.\\" example: (table|names|waitd\.conf)$')
CONF_SECTION = re.compile(r"^\[(daemon|celery|reduce|sink \S+|source \S+)\]$")
EXAMPLE_PAGES = ["incoming.5", "waitd.8", "waitd.conf.5"]


def _unescape(text: str) -> str:
    return re.sub(r"\\[&%]", "", text).replace("\\(aq", "'").replace("\\-", "-").replace("\\e", "\\")


def marked_examples(page: str) -> list[tuple[str | None, str]]:
    """(kind, text) of every .EX block of a page, kind from the
    `.\\" example: KIND` comment line before it (None: not marked)."""
    out: list[tuple[str | None, str]] = []
    kind: str | None = None
    current: list[str] | None = None
    for line in (MAN / page).read_text().splitlines():
        if (mark := MARK.match(line)) is not None:
            kind = mark.group(1)
        elif line == ".EX":
            current = []
        elif line == ".EE" and current is not None:
            out.append((kind, _unescape("\n".join(current))))
            kind, current = None, None
        elif current is not None:
            current.append(line)
    return out


def table_lines(text: str) -> list[str]:
    """The lines of a table example, each record on one line again (the
    page breaks a long one with a backslash)."""
    lines: list[str] = []
    joined = ""
    for line in text.splitlines():
        joined += line.strip() if joined else line
        if joined.endswith("\\") and not joined.endswith("\\\\"):
            joined = joined[:-1].rstrip() + " "
            continue
        lines.append(joined)
        joined = ""
    return lines


def _looks_like_a_table(text: str) -> bool:
    records = [line.split() for line in table_lines(text) if line.strip() and not line.lstrip().startswith("#")]
    return bool(records) and all(len(f) >= 7 and all(re.fullmatch(r"-?[0-9.]+", n) for n in f[4:7]) for f in records)


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_every_table_and_waitd_conf_example_is_marked(page):
    """So that the tests below see them all: an example that looks like a
    table or a waitd.conf carries its `.\\" example:` mark."""
    for kind, text in marked_examples(page):
        if kind is None:
            assert not _looks_like_a_table(text), f"{page}: a table example not marked:\n{text}"
            assert not CONF_SECTION.match(text.splitlines()[0]), f"{page}: a waitd.conf example not marked:\n{text}"


def example_cases() -> list[object]:
    """(page, n, table, names shown with it) of each table example."""
    cases = []
    for page in EXAMPLE_PAGES:
        examples = marked_examples(page)
        for i, (kind, text) in enumerate(examples):
            if kind != "table":
                continue
            names = examples[i + 1][1].split() if i + 1 < len(examples) and examples[i + 1][0] == "names" else []
            cases.append(pytest.param(page, i, "\n".join(table_lines(text)), names, id=f"{page}-{i}"))
    return cases


@pytest.mark.parametrize(("page", "n", "text", "names"), example_cases())
def test_each_table_example_passes_check_and_parses_the_names_shown_with_it(
    tmp_path, monkeypatch, capsys, page, n, text, names
):
    """The manual's HRIT pattern once parsed no real HRIT name, so every
    file would have been left alone.  Each table example must pass
    `waitd --check`, and each pattern= must parse the names it is shown
    with (a grouping record files them all into groups, as members)."""
    from waitd.config import table, wildcard
    from waitd.decide import groups

    passdir = tmp_path / "pass"
    passdir.mkdir()
    (passdir / "incoming").write_text(text + "\n")
    if " area=" in text:  # the tests' areas and orbital elements
        regions = Path(__file__).parent / "data" / "regions"
        (passdir / "waitd.conf").write_text(f"[regions]\nareas = {regions}/areas.yaml\ntle = {regions}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    code = cli.main(["--passdir", str(passdir), "--check"])
    assert code == 0, f"{page}, example {n}:\n{text}\n{capsys.readouterr().err}"
    records, errors = table.parse(text, "example", str(passdir), os.environ)
    assert errors == [] and records
    for record in (r for r in records if r.options.pattern is not None):
        match = wildcard.matcher(record.template)
        shown = [name for name in names if match(name)]
        assert shown, f"{page}, example {n}: record {record.number}'s pattern= is shown with no name it takes"
        for name in shown:
            fields = record.options.fields(name, record.directory, record.telem)
            assert fields is not None, f"{page}, example {n}: {name} does not parse with {record.options.pattern}"
        spec = record.options.group
        if spec is not None:
            index = groups.Index(spec, record.telem) if spec.region is None else _regions(spec, record, passdir)
            for i, name in enumerate(shown):
                filed = index.add(name, record.options.fields(name, record.directory, record.telem) or {}, i)
                assert not isinstance(filed, str), f"{page}, example {n}: {name}: {filed}"
            assert len(index.groups) == 1, f"{page}, example {n}: the names shown make more than one group"


def _regions(spec, record, passdir):
    from waitd.config import geodata
    from waitd.decide.regions import RegionIndex

    geo, problem = geodata.load(str(passdir))
    assert geo is not None, problem
    return RegionIndex(spec, record.telem, geo)


@pytest.mark.parametrize(
    ("page", "text"),
    [
        pytest.param(page, text, id=f"{page}-{i}")
        for page in EXAMPLE_PAGES
        for i, (kind, text) in enumerate(marked_examples(page))
        if kind == "waitd.conf"
    ],
)
def test_each_waitd_conf_example_passes_check(tmp_path, capsys, page, text):
    passdir = tmp_path / "pass"
    passdir.mkdir()
    (passdir / "incoming").write_text("")
    (passdir / "waitd.conf").write_text(text + "\n")
    code = cli.main(["--passdir", str(passdir), "--check"])
    assert code == 0, f"{page}:\n{text}\n{capsys.readouterr().err}"
