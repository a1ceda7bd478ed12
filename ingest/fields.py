"""The telemetry fields, defined once: every place that names them (contract, writer, reader, decoders, the SDK's
``consumes`` check) builds on these, so a new field is added here and nowhere else by hand. No imports: the
plugin SDK reads it without loading the contract's parser."""

from __future__ import annotations

# Float columns in table order, with their allowed range (None: only finiteness is checked).
FLOAT_FIELDS: tuple[tuple[str, float | None, float | None], ...] = (
    ("lat", -90.0, 90.0),
    ("lon", -180.0, 180.0),
    ("speed_kmh", None, None),
    ("heading_deg", None, None),
    ("payload_kg", 0.0, None),
    ("fuel_used_l", 0.0, None),
    ("engine_hours", 0.0, None),
)
# What a sample measures: the float columns, then the engine flag. A sample adds ``ts``, ``seq`` and ``extra``
# (its other fields, as JSON).
MEASURED_FIELDS: tuple[str, ...] = (*(name for name, _, _ in FLOAT_FIELDS), "engine_on")
SAMPLE_FIELDS: tuple[str, ...] = ("ts", "seq", *MEASURED_FIELDS, "extra")
