"""Pure edit functions shared by the console and the API: each returns a function applying one change to a
ClusterConf through the cluster_conf editing API (luci_web.clusters.configs.change runs them)."""
