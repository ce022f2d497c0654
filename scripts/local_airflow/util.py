"""Small process helpers shared by the parts of a local Airflow: ports, executables, logs, signals."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that is free right now (and not in ``exclude``)."""
    excluded = set(exclude)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in excluded:
            return port


def airflow_executable(bin_dir: Path | None = None) -> str:
    """The ``airflow`` script of an environment: ``bin_dir``'s, else the running interpreter's
    (else, for the running interpreter only, the one on PATH)."""
    if bin_dir is not None:
        candidate = bin_dir / "airflow"
        if not candidate.exists():
            raise FileNotFoundError(f"no `airflow` executable in {bin_dir}")
        return str(candidate)
    candidate = Path(sys.executable).parent / "airflow"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("airflow")
    if not found:
        raise FileNotFoundError("no `airflow` executable next to the interpreter or on PATH")
    return found


def tail(path: Path, n: int) -> str:
    """The last ``n`` lines of a log file (a placeholder if there is none yet)."""
    try:
        with open(path, "rb") as fh:
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"<{path.name}: no log yet>"
    return "\n".join(lines[-n:])


def pids_in_sessions(sessions: set[int]) -> list[int]:
    """PIDs (other than ours) whose session id is one of ``sessions`` (Linux /proc; else empty)."""
    found: list[int] = []
    proc = Path("/proc")
    if not sessions or not proc.is_dir():
        return found
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getsid(int(entry.name)) in sessions:
                found.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return found


def send_signal(pids: Iterable[int], sig: int, *, group: bool = False) -> None:
    """Send ``sig`` to each process (to its process group with ``group``), ignoring those gone
    or not ours."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
