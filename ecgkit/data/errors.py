"""Errors and skip reports for bad input: say which record and what is wrong."""
from __future__ import annotations

from dataclasses import dataclass, field


class RecordError(ValueError):
    """A record that cannot be used; ``record`` names it and ``problem`` says why."""

    def __init__(self, record: str, problem: str):
        self.record = str(record)
        self.problem = problem
        super().__init__(f"record {self.record}: {problem}")


@dataclass
class SkipReport:
    """What a bulk load skipped, and why; printed instead of crashing a whole run."""

    skipped: dict = field(default_factory=dict)

    def add(self, record, problem: str) -> None:
        self.skipped[record] = problem

    def __len__(self) -> int:
        return len(self.skipped)

    def __bool__(self) -> bool:  # an empty report is still a report
        return True

    def summary(self) -> str:
        if not self.skipped:
            return "no record skipped"
        lines = [f"{len(self.skipped)} record(s) skipped:"]
        lines += [f"  {rec}: {why}" for rec, why in list(self.skipped.items())[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)
