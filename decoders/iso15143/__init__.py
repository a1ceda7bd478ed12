"""ISO 15143-3 (AEMP 2.0) feeds pulled over HTTP (decoders/iso15143/README.md)."""

from decoders.iso15143.feed import Iso15143Feed

__all__ = ["Iso15143Feed"]
