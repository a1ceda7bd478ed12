"""Simulators: a quarry fleet that publishes realistic telemetry, with ground truth."""
