"""Every changelog-backed table, built on the app it is given (tables never import pipeline)."""

from tables.ping_counts import ping_counts

__all__ = ["ping_counts"]
