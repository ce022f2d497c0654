"""The examples in the docstrings of the contract, the domain package and the ``backfill`` command
are part of their specification: they must hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import backfill_controller.cli
import backfill_controller.domain

MODULES = sorted(
    [
        "backfill_controller.contract",
        *(
            m.name
            for package in (backfill_controller.domain, backfill_controller.cli)
            for m in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")
        ),
    ]
)


def test_every_module_is_checked() -> None:
    assert {
        "backfill_controller.contract",
        "backfill_controller.domain.request",
        "backfill_controller.domain.schedule",
        "backfill_controller.domain.plan",
        "backfill_controller.domain.report",
        "backfill_controller.domain.params",
        "backfill_controller.domain.settings",
        "backfill_controller.cli.commands",
        "backfill_controller.cli.conf",
        "backfill_controller.cli.connection",
        "backfill_controller.cli.flags",
        "backfill_controller.cli.progress",
        "backfill_controller.cli.views",
    } <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)

    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
    )
