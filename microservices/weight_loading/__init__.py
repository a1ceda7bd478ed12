"""Weight loading: haul cycles, payload bands and the 10/10/20 overload policy from on-board weighing."""

from microservices.weight_loading.service import WeightLoading

__all__ = ["WeightLoading"]
