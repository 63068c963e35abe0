"""Command-line tools for cluster.conf: `ccs_tool` (list, query and edit) and `ccs_config_validate`.

They start fast: they import only the standard library, lxml and `cluster_conf`, never Django, paramiko or the
network, and they import what a command needs only when that command runs. See docs/cli.md.
"""
