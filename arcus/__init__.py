"""Arcus: a multi-tenant Secure Web Gateway for edge boxes."""

__version__ = "0.1.0"
