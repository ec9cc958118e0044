"""Reports (being written)."""

rules = []
