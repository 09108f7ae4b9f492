"""wait_until: the one bounded poll of the test kit."""

from __future__ import annotations

import itertools

import pytest

from xdna_emu.testing.wait import wait_until


def test_returns_the_first_value_that_is_done() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), lambda v: v >= 3, interval=0) == 3


def test_default_done_is_truthiness() -> None:
    values = iter([0, "", "ready"])
    assert wait_until(lambda: next(values), interval=0) == "ready"


def test_timeout_names_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the flag; last value \{'on': False\}"):
        wait_until(lambda: {"on": False}, lambda v: v["on"], timeout=0, what="the flag")
