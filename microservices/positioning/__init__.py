"""Positioning: cleaned GNSS positions, zone visits, restricted entries, speeding and activity per machine."""

from microservices.positioning.service import Positioning

__all__ = ["Positioning"]
