"""cluster_conf: the cluster.conf format: parse, validate, lint, edit, diff, without losing what it does not know.

Pure Python + lxml; imports nothing else of the suite, never Django, never the network.

    from cluster_conf import ClusterConf, validate
    conf = ClusterConf.load("/etc/cluster/cluster.conf")
    for report in validate(conf):
        print(report.format(conf.source))
"""
from cluster_conf.document import ClusterConf
from cluster_conf.reports import ConfigError, Report, Severity

__all__ = ["ClusterConf", "ConfigError", "Report", "Severity", "validate"]


def validate(conf: ClusterConf, *, lint: bool = True) -> list[Report]:
    """Schema, semantic and (optionally) lint reports for `conf`, sorted by line."""
    from cluster_conf.validation import validate as _validate

    return _validate(conf, lint=lint)
