# SPDX-License-Identifier: MIT
"""A quicker `__init__` for a frozen dataclass with slots.

`dataclasses` makes a frozen class's `__init__` set each field through
`object.__setattr__` (the class's own raises FrozenInstanceError); with
slots, each field's member descriptor sets it straight, about twice as
fast.  `quick_init` makes that `__init__`: the same parameters, defaults
and values, nothing else changed (the class stays frozen to everyone
else).  A history line's `Event` has 18 fields and each run makes three
of them (issue 21: a start's own cost).

Only for what it can do alike: every field in `__init__`, no
`default_factory`, no `__post_init__` (TypeError otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def quick_init(cls: type) -> Callable[..., None]:
    """The quicker `__init__` of `cls`, a frozen dataclass with slots; the
    one `dataclasses` made is kept as its `dataclass_init`."""
    params = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: not a slotted dataclass without __post_init__")
    space: dict[str, Any] = {}
    args, body = [], []
    for i, f in enumerate(params):
        if not f.init or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: not a plain field")
        space[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            space[f"_default{i}"] = f.default
            args.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})")
    exec(f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body), space)  # as dataclasses does
    made: Callable[..., None] = space["__init__"]
    made.__qualname__ = f"{cls.__qualname__}.__init__"
    original = cls.__dict__["__init__"]
    made.__annotations__ = dict(original.__annotations__)
    vars(made)["dataclass_init"] = original
    return made
