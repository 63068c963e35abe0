"""Where a node's rgmanager is reached (a module of constants only, so the commands import nothing heavy)."""

RG_SOCKET = "var/run/cluster/rgmanager.sock"  # the control socket under $CLUSTER_ROOT (JSON lines, mode 0600)
RG_PIDFILE = "var/run/cluster/rgmanager.pid"
RG_PORT = 11177  # TCP, on each node's cluster address: rgmanager to rgmanager (the original used cman's port 177)
