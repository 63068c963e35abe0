"""rgmanager: the service engine (resource trees, placement, recovery, agents) daemon and CLIs (steps 2 and 5)."""
