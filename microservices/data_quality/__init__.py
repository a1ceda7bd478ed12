"""Data quality: sensor health per machine and sensor, with since-when, evidence and effect."""

from microservices.data_quality.service import DataQuality

__all__ = ["DataQuality"]
