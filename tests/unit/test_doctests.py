"""The examples in the docstrings of the domain package and of the ``backfill`` command are part
of their specification: they must hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import include.backfill
import include.cli

MODULES = sorted(
    m.name
    for package in (include.backfill, include.cli)
    for m in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")
)


def test_every_module_is_checked() -> None:
    assert {
        "include.backfill.request",
        "include.backfill.schedule",
        "include.backfill.plan",
        "include.backfill.report",
        "include.backfill.params",
        "include.backfill.settings",
        "include.cli.commands",
        "include.cli.conf",
        "include.cli.connection",
        "include.cli.flags",
        "include.cli.progress",
        "include.cli.views",
    } <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)

    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
    )
