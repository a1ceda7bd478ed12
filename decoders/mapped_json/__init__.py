"""Mapped JSON: a tracker's own JSON turned into samples by a declarative mapping (decoders/mapped_json/README.md)."""

from decoders.mapped_json.decoder import MappedJson

__all__ = ["MappedJson"]
