from arcus.stats.counters import Counters, CounterSet

__all__ = ["Counters", "CounterSet"]
