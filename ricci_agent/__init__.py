"""ricci_agent: the per-node SSH agent that stores, versions, propagates and syncs cluster.conf; arrives in step 3."""
