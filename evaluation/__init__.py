"""Services scored against the simulator's ground truth, and the pipeline run without its servers (for tests).

Above the services and the simulators: nothing imports evaluation but tests and benchmarks.
"""
