"""The cman layer (node side): heartbeat membership with view agreement, cman-style quorum and the quorum disk,
fencing; the `cmand` daemon and the `cman_tool`, `fence_node`, `fence_ack_manual` commands. See
docs/membership.md. Imports the standard library and `cluster_conf` only (never Django; paramiko only inside the
daemon's config pull)."""
