"""Micro-services: the plugin SDK and the built-in services, one folder each."""
