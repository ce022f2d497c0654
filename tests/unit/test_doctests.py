"""The examples in the domain package's docstrings are part of its specification: they must hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import include.backfill

MODULES = sorted(m.name for m in pkgutil.iter_modules(include.backfill.__path__, "include.backfill."))


def test_every_module_is_checked() -> None:
    assert {"request", "schedule", "plan", "report", "params", "settings"} <= {
        m.rsplit(".", 1)[1] for m in MODULES
    }


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)

    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
    )
