"""Supervision for Pykka actors: restart strategies, backoff, health monitoring, typed messages.

The pieces a component needs: subclass `SupervisedActor`, describe it with a `ChildSpec`, and
run it under a `Supervisor` (the root is a `SupervisionTree`). Callers keep an `ActorHandle`.
"""

from khipu.actors.actor import SupervisedActor
from khipu.actors.backoff import ExponentialBackoff
from khipu.actors.children import ChildContext, ChildRuntime, ChildState
from khipu.actors.errors import (
    ActorDied,
    ActorRestarted,
    ActorStalled,
    ActorUnavailable,
    ChildStartFailed,
    ProcessExited,
    RequestRejected,
    SupervisorGaveUp,
)
from khipu.actors.handle import ActorHandle
from khipu.actors.process import ProcessChild
from khipu.actors.strategy import (
    ChildSpec,
    Directive,
    RestartPolicy,
    StrategyKind,
    SupervisionStrategy,
    decider_from_map,
)
from khipu.actors.supervision import Supervisor, supervisor_spec
from khipu.actors.tree import SupervisionTree

__all__ = [
    "ActorDied",
    "ActorHandle",
    "ActorRestarted",
    "ActorStalled",
    "ActorUnavailable",
    "ChildContext",
    "ChildRuntime",
    "ChildSpec",
    "ChildStartFailed",
    "ChildState",
    "Directive",
    "ExponentialBackoff",
    "ProcessChild",
    "ProcessExited",
    "RequestRejected",
    "RestartPolicy",
    "StrategyKind",
    "SupervisedActor",
    "SupervisionStrategy",
    "SupervisionTree",
    "Supervisor",
    "SupervisorGaveUp",
    "decider_from_map",
    "supervisor_spec",
]
