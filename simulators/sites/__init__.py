"""Shipped site files (package data): the demo quarry."""
