"""``make dist``'s check of what it built: the wheel and the sdist hold the whole package.

* Every file under ``include/backfill_controller`` (caches aside) is in the wheel, under
  ``backfill_controller/``, and in the sdist, under ``include/backfill_controller/``: modules, the
  Backfills page, ``py.typed`` and the plugin's database files (Alembic config and migrations).
* The wheel holds nothing else of the package (no ``__pycache__``, no stray files).
* The wheel's entry points are exactly those ``pyproject.toml`` declares.

    python -m scripts.check_dist [DIST_DIR]     # default: dist/
"""

from __future__ import annotations

import importlib.metadata
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "backfill_controller"
SOURCE = REPO_ROOT / "include" / PACKAGE


def package_files() -> set[str]:
    """The package's files as paths relative to ``include/`` (``backfill_controller/...``)."""
    return {
        path.relative_to(SOURCE.parent).as_posix()
        for path in SOURCE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def declared_entry_points() -> dict[str, dict[str, str]]:
    """``{group: {name: "module:object"}}`` as pyproject.toml declares them."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = {group: dict(points) for group, points in project.get("entry-points", {}).items()}
    if project.get("scripts"):
        groups["console_scripts"] = dict(project["scripts"])
    return groups


def only(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"{dist}: expected one {pattern}, found {[p.name for p in found]}")
    return found[0]


def check(dist: Path) -> list[str]:
    """The problems of the wheel and sdist in ``dist`` (empty when both are complete)."""
    problems: list[str] = []
    expected = package_files()
    wheel = only(dist, "*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = importlib.metadata.PathDistribution(zipfile.Path(zf, f"{dist_info}/"))
        found: dict[str, dict[str, str]] = {}
        for point in metadata.entry_points:
            found.setdefault(point.group, {})[point.name] = point.value
    in_wheel = {n for n in names if n.startswith(f"{PACKAGE}/")}
    problems += [f"{wheel.name}: missing {n}" for n in sorted(expected - in_wheel)]
    problems += [
        f"{wheel.name}: holds {n}, which is not in the source tree" for n in sorted(in_wheel - expected)
    ]
    if found != declared_entry_points():
        problems.append(f"{wheel.name}: entry points {found} differ from pyproject.toml's")

    sdist = only(dist, "*.tar.gz")
    with tarfile.open(sdist) as tf:
        root = tf.getnames()[0].split("/", 1)[0]
        in_sdist = {n.split("/", 2)[2] for n in tf.getnames() if n.startswith(f"{root}/include/{PACKAGE}/")}
    problems += [f"{sdist.name}: missing include/{n}" for n in sorted(expected - in_sdist)]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dist = Path(args[0]) if args else REPO_ROOT / "dist"
    problems = check(dist)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{dist}: wheel and sdist hold all {len(package_files())} files of {PACKAGE}; entry points match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
