"""The reliability figures the suite produces for the README: faults injected and survived, bad
inputs tried and refused, runs lost or duplicated. Tests record into the session's ``figures``
fixture; the terminal summary prints the table and writes it to ``.figures/<backend>.md``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Figures:
    faults: list[tuple[str, bool]] = field(default_factory=list)
    inputs: list[tuple[str, bool]] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    checked_dates: int = 0
    measures: list[tuple[str, str]] = field(default_factory=list)

    def fault(self, what: str, survived: bool) -> None:
        """A fault injected into a live Airflow; ``survived``: the backfill ended with the right result."""
        self.faults.append((what, survived))

    def bad_input(self, what: str, refused: bool) -> None:
        """A bad or hostile request; ``refused``: clear error (or stored inert) and nothing changed."""
        self.inputs.append((what, refused))

    def runs(self, expected_dates: set[str], runs_per_date: dict[str, int]) -> None:
        """Count dates with no run (lost) and dates run more than once (duplicated)."""
        self.checked_dates += len(expected_dates)
        self.lost += len(expected_dates - {d for d, n in runs_per_date.items() if n > 0})
        self.duplicated += sum(1 for d in expected_dates if runs_per_date.get(d, 0) > 1)

    def measure(self, what: str, value: str) -> None:
        """A figure measured on the way (never asserted: speed is the benchmark's to judge)."""
        self.measures.append((what, value))

    def __bool__(self) -> bool:
        return bool(self.faults or self.inputs or self.checked_dates or self.measures)

    def markdown(self, backend: str) -> str:
        survived = sum(ok for _, ok in self.faults)
        refused = sum(ok for _, ok in self.inputs)
        lines = [
            f"| figure ({backend}) | value |",
            "|---|---|",
            f"| faults injected / survived | {len(self.faults)} / {survived} |",
            f"| bad inputs tried / refused or stored inert | {len(self.inputs)} / {refused} |",
            f"| dates checked after faults | {self.checked_dates} |",
            f"| runs lost | {self.lost} |",
            f"| runs duplicated | {self.duplicated} |",
            "",
            "Faults: "
            + "; ".join(f"{what} ({'survived' if ok else 'NOT survived'})" for what, ok in self.faults),
            "",
            "Bad inputs: " + "; ".join(f"{what}{'' if ok else ' (NOT refused)'}" for what, ok in self.inputs),
            *(
                ["", "Measured: " + "; ".join(f"{what}: {value}" for what, value in self.measures)]
                if self.measures
                else []
            ),
        ]
        return "\n".join(lines) + "\n"
