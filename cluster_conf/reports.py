"""Coded reports: every finding about a configuration is a Report with a stable code.

Front ends render the same report as a CLI line (`FILE:LINE: error CODE: message`), as JSON or in a page, so
one finding reads the same everywhere. The codes and their meaning are listed in docs/config-reports.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Report:
    """One finding. `path` is the element path (`/cluster/clusternodes/clusternode[2]`), `hint` a one-line fix."""

    code: str
    severity: Severity
    message: str
    line: int | None = None
    path: str | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        text = f"{where}: {self.severity.value} {self.code}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


def error(code: str, message: str, **where: object) -> Report:
    return Report(code, Severity.ERROR, message, **where)  # type: ignore[arg-type]


def warning(code: str, message: str, **where: object) -> Report:
    return Report(code, Severity.WARNING, message, **where)  # type: ignore[arg-type]


def has_errors(reports: list[Report]) -> bool:
    return any(r.is_error for r in reports)


class ConfigError(Exception):
    """A configuration could not be read or written; carries the report that says why, in one line."""

    def __init__(self, report: Report, source: str = "<string>") -> None:
        super().__init__(report.message)
        self.report = report
        self.source = source

    def __str__(self) -> str:
        return self.report.format(self.source)
