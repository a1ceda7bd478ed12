"""Recorded history in: a site's exported telemetry files imported through the mapping language and the contract."""
