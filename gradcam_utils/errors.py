"""The one error type and the small checks that every layer shares: each bad input gets one line that says
what is wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class GradCamError(ValueError):
    """A bad input: the message says what is wrong and what to do."""


def whole_number(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int when it is a whole number of at least `minimum` (a bool is not), else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GradCamError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return int(value)


def one_of(what: str, value: Any, choices: Sequence[Any]) -> Any:
    """`value` when it is one of `choices`, else "unknown <what> 'x'; choose one of: a, b, c"."""
    if value not in choices:
        raise GradCamError(f"unknown {what} {value!r}; choose one of: {', '.join(map(str, choices))}")
    return value


def close_matches(name: Any, names: Sequence[str]) -> str:
    """ "; close matches: a, b" for a mistyped name, else the first choices: the tail of an "unknown ..." error."""
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5)
    if close:
        return f"; close matches: {', '.join(close)}"
    more = ", ..." if len(names) > 20 else ""
    return f"; choose one of: {', '.join(names[:20])}{more}"


def describe(value: Any) -> str:
    """ "a tensor of shape [1, 3]" for a tensor, else the type's name: for errors about what was passed."""
    return f"a tensor of shape {list(value.shape)}" if torch.is_tensor(value) else type(value).__name__
