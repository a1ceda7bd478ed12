"""One router per resource; ``registry.app`` includes them all."""
