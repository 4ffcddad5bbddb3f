# SPDX-License-Identifier: MIT
"""The values of record options: each converter reads one option's text.

Each takes the text after `=` and returns the value `options.Options`
holds, or raises ValueError saying what was expected; `options` names
which option takes which.  Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

from waitd.config import groupspec

RUN_KINDS = ("local", "celery")
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def areas(text: str) -> str:
    names = text.split(",")
    if not all(n and n.isprintable() for n in names):
        raise ValueError("expected area names joined by commas, such as euron1")
    if len(names) > 1:
        raise ValueError("one area a record (a file runs once a record): write a record per area")
    return text


def whole(least: int, most: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _WHOLE.fullmatch(text) or not least <= Decimal(text) <= most:
            raise ValueError(f"expected a whole number from {least} to {most}")
        return int(text)

    return convert


def seconds(least_exclusive: bool, most: int) -> Callable[[str], float]:
    def convert(text: str) -> float:
        if not _DECIMAL.fullmatch(text):
            raise ValueError("expected a plain decimal number of seconds such as 30 or 0.5")
        value = Decimal(text)
        if value > most or (least_exclusive and value == 0):
            raise ValueError(f"expected more than 0 and at most {most} seconds")
        return float(text)

    return convert


def members(text: str) -> str:
    groupspec.members(text)
    return text


def minutes(text: str) -> float:
    if not _DECIMAL.fullmatch(text) or not 0 < Decimal(text) <= 1440:
        raise ValueError("expected a plain decimal number of minutes, more than 0 and at most 1440")
    return float(text)


def names(text: str) -> str:
    names = text.split(",")
    if not all(n.isidentifier() for n in names):
        raise ValueError("expected field names joined by commas, such as proc_time,orbit")
    return text


def yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise ValueError("expected yes or no")
    return text == "yes"


def where(text: str) -> str:
    if text not in RUN_KINDS:
        raise ValueError(f"expected {' or '.join(RUN_KINDS)}")
    return text


def text(text: str) -> str:
    if not text:
        raise ValueError("empty")
    return text


def fields_from(text: str) -> str:
    if text not in ("name", "json"):
        raise ValueError("expected name (the fields of pattern=) or json (a JSON file's too)")
    return text
