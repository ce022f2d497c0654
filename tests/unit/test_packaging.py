"""The distribution ``airflow-backfill-controller`` as pyproject.toml declares it, checked without
building it (``make dist`` builds the wheel and checks its contents; ``make test-stock`` installs it
on a stock Airflow).

What a deployment gets from ``pip install``: every file of the package, entry points that import,
provider information Airflow accepts, and dependency bounds that are the versions the suite runs.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib
import json
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from setuptools import find_namespace_packages, find_packages

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE = "backfill_controller"
SOURCE_ROOT = REPO / SETUPTOOLS["package-dir"][""]
PACKAGE_DIR = SOURCE_ROOT / PACKAGE

ENTRY_POINTS = {
    f"{group}:{name}": value
    for group, points in {"console_scripts": PROJECT["scripts"], **PROJECT["entry-points"]}.items()
    for name, value in points.items()
}
#: Dependencies whose lower bound must be the pin the suite runs (requirements.txt).
PINNED_LOWER_BOUNDS = ("apache-airflow", "apache-airflow-providers-standard")


def package_files() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def found_packages() -> set[str]:
    """The packages setuptools puts in the wheel, found as ``[tool.setuptools.packages.find]`` says
    (namespace packages included unless it says ``namespaces = false``, setuptools' default)."""
    find = SETUPTOOLS["packages"]["find"]
    finder = find_namespace_packages if find.get("namespaces", True) else find_packages
    where = str(REPO / find["where"][0])
    return set(finder(where=where, include=find.get("include", ["*"]), exclude=find.get("exclude", ())))


def package_data(package_dir: Path = PACKAGE_DIR) -> set[Path]:
    """The files ``[tool.setuptools.package-data]`` adds, minus ``exclude-package-data``, matched as
    setuptools' build_py matches them (``glob(recursive=True)``, then ``fnmatch`` to exclude)."""
    included = {
        Path(match)
        for pattern in SETUPTOOLS["package-data"].get(PACKAGE, [])
        for match in glob.glob(str(package_dir / pattern), recursive=True)
        if Path(match).is_file()
    }
    excluded = [str(package_dir / p) for p in SETUPTOOLS.get("exclude-package-data", {}).get(PACKAGE, [])]
    return {p for p in included if not any(fnmatch.fnmatch(str(p), pattern) for pattern in excluded)}


def requirement(name: str) -> Requirement:
    (found,) = [r for r in map(Requirement, PROJECT["dependencies"]) if r.name == name]
    return found


def pin(name: str) -> str:
    """The version requirements.txt pins ``name`` to."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req and Requirement(req).name == name:
            (spec,) = Requirement(req).specifier
            assert spec.operator == "==", line
            return spec.version
    raise AssertionError(f"requirements.txt pins no {name}")


# --- the wheel holds every file -----------------------------------------------------------------


def test_every_module_is_in_a_package_the_wheel_holds() -> None:
    packages = found_packages()
    for path in package_files():
        if path.suffix == ".py":
            dotted = ".".join(path.parent.relative_to(SOURCE_ROOT).parts)
            assert dotted in packages, f"{path.relative_to(REPO)}: {dotted} is not a package setuptools finds"


def test_the_package_data_patterns_cover_every_file_that_is_not_a_module() -> None:
    data = package_data()
    missing = [p.relative_to(REPO) for p in package_files() if p.suffix != ".py" and p not in data]
    assert not missing, f"add patterns to [tool.setuptools.package-data] for {missing}"


def test_the_page_and_the_typing_marker_are_package_data() -> None:
    data = {p.relative_to(PACKAGE_DIR).as_posix() for p in package_data()}
    assert {"py.typed", "server/page/backfills.html", "server/page/backfills.css"} <= data
    assert "server/page/backfills.js" in data


def test_no_cache_file_is_package_data(tmp_path: Path) -> None:
    """A ``**`` pattern also matches ``__pycache__``: the exclusion keeps compiled files out."""
    fake = tmp_path / PACKAGE
    (fake / "db" / "versions" / "__pycache__").mkdir(parents=True)
    (fake / "db" / "alembic.ini").write_text("")
    (fake / "db" / "versions" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")
    data = {p.relative_to(fake).as_posix() for p in package_data(fake)}
    assert "db/alembic.ini" in data
    assert not [p for p in data if p.endswith(".pyc")]


# --- entry points and provider information ----------------------------------------------------


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS), ids=list(ENTRY_POINTS))
def test_every_entry_point_names_an_importable_object(entry_point: str) -> None:
    module, _, attribute = ENTRY_POINTS[entry_point].partition(":")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    assert callable(target), ENTRY_POINTS[entry_point]


def test_the_plugin_entry_point_is_an_airflow_plugin() -> None:
    from airflow.plugins_manager import AirflowPlugin

    module, _, name = PROJECT["entry-points"]["airflow.plugins"]["backfill_controller"].partition(":")
    assert issubclass(getattr(importlib.import_module(module), name), AirflowPlugin)


def test_the_provider_info_validates_against_airflows_schema() -> None:
    import airflow
    import jsonschema

    from backfill_controller.provider import get_provider_info

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    # Airflow refuses a provider whose package-name is not its distribution's name.
    assert info["package-name"] == PROJECT["name"]


def test_every_db_manager_the_provider_names_is_one() -> None:
    """``airflow db migrate`` runs them; Airflow only logs a warning for one that does not import."""
    from airflow.utils.db_manager import BaseDBManager

    from backfill_controller.provider import get_provider_info

    managers = get_provider_info().get("db-managers", [])
    if not (PACKAGE_DIR / "db").is_dir():
        pytest.skip("the package has no db package: nothing for airflow db migrate to run")
    for path in managers:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseDBManager), path


# --- dependencies --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PINNED_LOWER_BOUNDS)
def test_the_lower_bound_is_the_version_the_suite_pins(name: str) -> None:
    (spec,) = requirement(name).specifier
    assert (spec.operator, spec.version) == (">=", pin(name))


def test_no_dependency_has_an_upper_bound() -> None:
    """A patch release of Airflow or a library must never be blocked by this package."""
    for req in map(Requirement, PROJECT["dependencies"]):
        assert req.specifier, f"{req.name} has no lower bound"
        assert {s.operator for s in req.specifier} == {">="}, str(req)
