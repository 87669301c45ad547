"""Supervision for Pykka actors: restart strategies, backoff, health monitoring, typed messages.

A component subclasses `SupervisedActor` (its constructor takes the `ChildContext` first and
rebuilds its state from storage), is described by a `ChildSpec`, and runs under a `Supervisor`;
the root is a `SupervisionTree`. Callers keep an `ActorHandle`, valid across restarts::

    board, metrics = HealthBoard(), NodeMetrics()
    tree = SupervisionTree("NodeSupervisor", [
        ChildSpec("StorageWriter", lambda ctx: StorageWriter.start(ctx, config.datadir)),
        supervisor_spec("SyncSupervisor", [...], SupervisionStrategy(StrategyKind.ALL_FOR_ONE)),
        ChildSpec("RpcServer", lambda ctx: RpcServer.start(ctx, config, board.health_snapshot)),
        ChildSpec("HealthMonitor", lambda ctx: HealthMonitor.start(ctx, board, metrics=metrics)),
    ])
    writer = tree.handle("StorageWriter")
    shutdown = GracefulShutdown(tree)
    shutdown.install()
    sys.exit(shutdown.run())
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
