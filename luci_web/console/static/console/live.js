// live updates: see luci_web/live
