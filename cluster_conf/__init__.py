"""cluster_conf: the cluster.conf format: parse, validate, lint, edit, diff, without losing what it does not know.

Pure Python + lxml; imports nothing else of the suite, never Django, never the network.

    from cluster_conf import ClusterConf, validate
    conf = ClusterConf.load("/etc/cluster/cluster.conf")
    for report in validate(conf):
        print(report.format(conf.source))

The names below are loaded on first use, so that importing a light submodule (`cluster_conf.cli.common`, used by
every command) does not load lxml: `clustat` and `cman_tool` stay fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster_conf.document import ClusterConf
    from cluster_conf.reports import ConfigError, Report, Severity

__all__ = ["ClusterConf", "ConfigError", "Report", "Severity", "validate"]

_LAZY = {"ClusterConf": "cluster_conf.document", "ConfigError": "cluster_conf.reports",
         "Report": "cluster_conf.reports", "Severity": "cluster_conf.reports"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cluster_conf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def validate(conf: ClusterConf, *, lint: bool = True) -> list[Report]:
    """Schema, semantic and (optionally) lint reports for `conf`, sorted by line."""
    from cluster_conf.validation import validate as _validate

    return _validate(conf, lint=lint)
