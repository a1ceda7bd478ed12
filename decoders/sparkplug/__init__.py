"""Sparkplug B 3.0 (decoders/sparkplug/README.md): births, aliases, sequence numbers, deaths, rebirth requests."""

from decoders.sparkplug.decoder import SparkplugB

__all__ = ["SparkplugB"]
