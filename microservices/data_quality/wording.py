"""What the health check says: sensor names, what a finding is called, and what it does to the other services.

Shared by the service (events and alerts) and its routes (the site-view card), so each is worded in one place.
"""

from __future__ import annotations

SENSOR_NAMES = {"heading": "heading", "speed": "speed", "position": "position", "payload": "payload",
                "fuel": "fuel counter", "hours": "engine hours", "clock": "clock"}
# what a bad sensor does to the services' answers ({m}: the machine, {v}: the finding's value)
EFFECTS = {
    "heading": "encounters, dead reckoning and road matching for {m} use the track course instead",
    "speed": "speed for {m} comes from the track instead (traffic awareness, positioning)",
    "position:absent": "{m} cannot be placed: no zone visits, encounters or zones of its haul cycles",
    "position": "{m}'s position spikes are gated out of its track; its zone visits and encounters may come late",
    "payload:offset": "haul cycles of {m}: weight loading takes payload from the empty level ({v} kg), not zero",
    "payload": "haul cycles of {m} come from its track while it lasts, unweighed (no payload, band or passes)",
    "fuel": "fuel and fuel-per-tonne figures of {m} are unreliable",
    "hours": "operating hours and tonnes per hour of {m} are unreliable",
    "clock": "{m}'s clock runs ahead: the other services take its samples' times back to when they arrived "
             "(a replay of stored samples, arriving long after, stays shifted)",
}
SHORT_EFFECTS = {
    "heading": "positions used instead", "speed": "track speed used instead",
    "position:absent": "machine cannot be placed", "position": "spikes left out",
    "payload:offset": "payload taken from the empty level", "payload": "cycles from the track, unweighed",
    "fuel": "fuel figures unreliable", "hours": "hour figures unreliable", "clock": "arrival times used",
}


def effect_of(sensor: str, status: str, machine_id: str, value: float | None, short: bool = False) -> str:
    """The sentence saying what a finding does to the services' answers."""
    table = SHORT_EFFECTS if short else EFFECTS
    text = table.get(f"{sensor}:{status}", table[sensor])
    return text.format(m=machine_id, v="" if value is None else f"{value:.0f}")


def describe(sensor: str, status: str, value: float | None) -> str:
    """'heading stuck at 0 deg', 'payload offset +2500 kg', ... for messages and the card."""
    name = SENSOR_NAMES[sensor]
    if status == "stuck" and value is not None and sensor in ("heading", "speed", "payload"):
        unit = {"heading": " deg", "speed": " km/h", "payload": " kg"}[sensor]
        return f"{name} stuck at {value:.0f}{unit}"
    if status == "offset" and value is not None:
        unit = {"heading": " deg", "speed": " km/h", "payload": " kg"}.get(sensor, "")
        return f"{name} offset {value:+.0f}{unit}"
    if status == "skew":
        return f"{name} off ({value:+.1f})" if value is not None else f"{name} off"
    return f"{name} {status}"
