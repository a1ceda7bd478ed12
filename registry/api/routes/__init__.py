"""One router per resource; ``registry.api.app`` includes them all."""
