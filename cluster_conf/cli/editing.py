"""How ccs_tool changes a file: load, edit inside a transaction (config_version + 1), refuse new errors, save.

A file that already has errors can still be edited: only errors the edit *introduces* block the write, so an
admin can repair a broken configuration one command at a time.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Collection
from typing import TypeVar

from cluster_conf.cli.common import CliError
from cluster_conf.document import ClusterConf
from cluster_conf.reports import Report

T = TypeVar("T")
STDOUT = "-"


def load(path: str) -> ClusterConf:
    """Load `path`; a missing, unreadable or malformed file raises ConfigError (a one-line report)."""
    return ClusterConf.load(path)


def error_reports(conf: ClusterConf) -> list[Report]:
    from cluster_conf import validate

    return [r for r in validate(conf, lint=False) if r.is_error]


def _key(report: Report) -> tuple[str, str]:
    # Lines and paths move when elements are added or removed; code + message identifies a finding.
    return report.code, report.message


def new_errors(before: list[Report], after: list[Report], tolerated: Collection[str] = ()) -> list[Report]:
    """Errors in `after` that were not in `before` (as many times), ignoring the `tolerated` codes."""
    remaining = Counter(_key(r) for r in before)
    fresh = []
    for report in after:
        key = _key(report)
        if remaining[key] > 0:
            remaining[key] -= 1
        elif report.code not in tolerated:
            fresh.append(report)
    return fresh


def apply_edit(
    conf: ClusterConf,
    change: Callable[[ClusterConf], T],
    *,
    tolerated: Collection[str] = (),
) -> T:
    """Run `change` in a transaction (config_version + 1) and refuse a result with new validation errors.

    The edited document is validated first; only when it has errors is the original validated too (parsed
    again from its bytes), to tell new errors from old ones. The common case validates once.
    """
    original = conf.to_bytes()
    with conf.transaction():
        result = change(conf)
    after = error_reports(conf)
    if not after:
        return result
    before = error_reports(ClusterConf.from_bytes(original, conf.source))
    fresh = new_errors(before, after, tolerated)
    if fresh:
        raise CliError(
            f"not writing {conf.source}: the change would make the configuration invalid",
            details=[r.format(conf.source) for r in fresh],
        )
    return result


def write(conf: ClusterConf, output: str | None) -> None:
    """Save atomically where it was loaded from (or to `output`), keeping `.old`; `-` writes to stdout."""
    if output == STDOUT:
        sys.stdout.write(conf.to_string())
        return
    target = output or conf.source
    try:
        conf.save(target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


def edit_file(
    path: str,
    output: str | None,
    change: Callable[[ClusterConf], T],
    *,
    tolerated: Collection[str] = (),
) -> T:
    conf = load(path)
    result = apply_edit(conf, change, tolerated=tolerated)
    write(conf, output)
    return result
