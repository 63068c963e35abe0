"""Front ends of the cman layer: thin adapters over the `cman` modules."""
