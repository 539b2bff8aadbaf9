"""Fakes of the outside systems that cannot run here, sharing one world in Redis across processes.

``FakeWorld`` holds the state and the injection rules (fail, crash, pause,
latency); ``tests.fakes.providers`` has one fake per contract of ``integrations``.
"""

from tests.fakes.world import FakeWorld, SimulatedCrash

__all__ = ["FakeWorld", "SimulatedCrash"]
