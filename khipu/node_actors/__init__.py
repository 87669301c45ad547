"""The node's actors, under the supervision of `khipu.actors`.

```
NodeSupervisor (one-for-one)
├── StorageWriter   the only writer of the chain store; commits one verified block at a time
├── Importer        feeds blocks of block files (the dev chain, `run --import`) to the writer
└── HealthMonitor   heartbeats every actor, logs health lines, feeds /metrics and khipu_health
```

`khipu.node.Node` builds the tree; adding a component is one more `ChildSpec` there.
"""
