"""Command-line front ends of rgmanager (rg_test, ...): thin adapters over the engine library."""
