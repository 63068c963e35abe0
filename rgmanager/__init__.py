"""rgmanager: the service engine (resource trees, placement, recovery, agents) and its daemon and CLIs; arrives in steps 2 and 5."""
