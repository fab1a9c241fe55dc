"""Accounting for every record that does not reach training.

A bad record is never fatal on its own (real data sets always hold a few), but nothing is
lost silently either: each skip is recorded with its reason and ``file:line``, the report is
printed at the end, and the run stops only when the share of bad records passes a limit.
Over-long samples dropped or truncated by the length policy are reported too, but they are a
configured choice rather than bad data, so they do not count toward that limit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SHOWN_PER_REASON = 5


class BadRecordError(ValueError):
    """More bad records than the configured share allows."""


@dataclass
class DataReport:
    """What happened to each record read: kept, skipped as bad, truncated or dropped."""

    records: int = 0
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    dropped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    truncated: list[str] = field(default_factory=list)

    def count_record(self) -> None:
        self.records += 1

    def skip(self, reason: str, location: str, detail: str = "") -> None:
        """Record a bad record (counts toward ``max_bad_fraction``)."""
        self.skipped[reason].append(f"{location} ({detail})" if detail else location)

    def drop(self, reason: str, location: str) -> None:
        """Record a sample removed by policy (e.g. over-long with ``overlong="drop"``)."""
        self.dropped[reason].append(location)

    def truncate(self, location: str) -> None:
        self.truncated.append(location)

    def merge(self, other: DataReport) -> None:
        """Add ``other``'s records and events (a worker's share of the data) after this report's own."""
        self.records += other.records
        for reason, where in other.skipped.items():
            self.skipped[reason].extend(where)
        for reason, where in other.dropped.items():
            self.dropped[reason].extend(where)
        self.truncated.extend(other.truncated)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored with a sample store so a reused store reports what its build saw."""
        return {"records": self.records, "skipped": {k: list(v) for k, v in sorted(self.skipped.items()) if v},
                "dropped": {k: list(v) for k, v in sorted(self.dropped.items()) if v}, "truncated": list(self.truncated)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataReport:
        report = cls(records=int(raw["records"]), truncated=list(raw["truncated"]))
        for reason, where in raw["skipped"].items():
            report.skipped[reason].extend(where)
        for reason, where in raw["dropped"].items():
            report.dropped[reason].extend(where)
        return report

    @property
    def bad(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def bad_fraction(self) -> float:
        return self.bad / self.records if self.records else 0.0

    def counts(self) -> dict[str, int]:
        """Bad-record counts by reason."""
        return {reason: len(where) for reason, where in sorted(self.skipped.items()) if where}

    def dropped_counts(self) -> dict[str, int]:
        return {reason: len(where) for reason, where in sorted(self.dropped.items()) if where}

    def check(self, max_bad_fraction: float) -> None:
        """Raise :class:`BadRecordError` when bad records exceed ``max_bad_fraction`` of all records."""
        if self.records and self.bad_fraction > max_bad_fraction:
            raise BadRecordError(
                f"{self.bad} of {self.records} records ({self.bad_fraction:.2%}) are bad, more than the allowed "
                f"{max_bad_fraction:.2%} (max_bad_fraction); " + "; ".join(self._reason_lines())
            )

    def format(self) -> str:
        """A human-readable summary, one line per reason with the first few locations."""
        lines = [f"{self.records} records read, {self.bad} skipped as bad ({self.bad_fraction:.2%})"]
        lines += [f"  skipped {line}" for line in self._reason_lines()]
        for reason, where in sorted(self.dropped.items()):
            if where:
                lines.append(f"  dropped {reason}: {len(where)} ({_shown(where)})")
        if self.truncated:
            lines.append(f"  truncated to max_length: {len(self.truncated)} ({_shown(self.truncated)})")
        return "\n".join(lines)

    def _reason_lines(self) -> list[str]:
        return [f"{reason}: {len(where)} ({_shown(where)})" for reason, where in sorted(self.skipped.items()) if where]


def _shown(where: list[str]) -> str:
    head = ", ".join(where[:SHOWN_PER_REASON])
    return head if len(where) <= SHOWN_PER_REASON else f"{head}, and {len(where) - SHOWN_PER_REASON} more"
