"""JSON-RPC over HTTP and WebSocket: eth, net, web3, debug, admin and khipu namespaces."""
