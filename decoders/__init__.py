"""Decoders in front of ingest: what devices and OEM feeds actually send, turned into the normalised sample."""
