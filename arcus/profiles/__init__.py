"""Profiles shipped inside the package (and so inside the frozen binary)."""
