"""The node's HealthMonitor: the library's monitor with the node's fault-injection point."""

from __future__ import annotations

from typing import Any

from khipu.actors.health import HealthMonitor
from khipu.actors.messages import HealthTick
from khipu.node_actors.faults import FaultPlan


class NodeHealthMonitor(HealthMonitor):
    """A `HealthMonitor` whose ticks pass the `HealthMonitor.tick` fault point.

    Takes the HealthMonitor's arguments plus `faults`.
    """

    def __init__(self, *args: Any, faults: FaultPlan | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults = faults if faults is not None else FaultPlan()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, HealthTick):
            self.faults.check("HealthMonitor.tick")
        return super().on_receive(message)
