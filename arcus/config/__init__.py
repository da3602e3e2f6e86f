"""Profiles: loading, validation with ``file:line`` errors, and the frozen schema they produce."""

from arcus.config.loader import check_profile, load_profile, parse_profile
from arcus.config.sources import profile_text, shipped_names

__all__ = ["check_profile", "load_profile", "parse_profile", "profile_text", "shipped_names"]
