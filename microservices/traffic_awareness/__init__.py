"""Traffic awareness: close encounters with live alerts, queues at loaders and dumps, congestion, re-allocation."""

from microservices.traffic_awareness.service import TrafficAwareness

__all__ = ["TrafficAwareness"]
