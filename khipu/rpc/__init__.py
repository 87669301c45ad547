"""JSON-RPC over HTTP: the eth, net, web3, debug, admin, txpool and khipu namespaces.

The node starts it with `start_rpc(store, rules, config, health)` (server.py) and stops it with
`RpcServer.stop()`; `add_rpc_arguments` / `rpc_config_from_args` give geth's flag names.

Layout: server.py (HTTP transport, limits, flags), dispatch.py (JSON-RPC framing, batches,
errors), registry.py (the method table), params.py (geth's parameter decoding), chain_view.py
(read-only access to blocks, receipts and the state at any block), formatting.py (geth's JSON
for blocks, transactions, receipts, logs), one module per group of methods (eth_blocks,
eth_state, eth_transactions, eth_logs, eth_call, eth_simulate, eth_fees, eth_config, debug,
debug_trace, net_web3, khipu), and the EVM plumbing they share: call_execution.py (calls on a
throwaway state with overrides), evm_hooks.py (per-opcode hooks: deadlines, tracers),
replay.py (re-executing a stored block), tracers.py (struct logger, callTracer).
"""
