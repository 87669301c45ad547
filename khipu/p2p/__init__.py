"""devp2p, written here: discv4, RLPx (ECIES, frames, snappy), the p2p, eth and snap protocols.

Layers, bottom up (each module does one thing; interfaces live in abc.py):

- keys, ecies, handshake, frames: node keys and enode URLs, ECIES, the auth/ack handshake
  (EIP-8 and legacy), the frame codec with its MACs.
- transport, session, server: whole messages over frames with snappy and size limits; Hello,
  capability negotiation, Ping/Pong and Disconnect; dialling and the inbound listener.
- eth/: eth/68 messages, serving from a ChainReader, EthPeer (Status with fork ids, request ids,
  timeouts, announcements; also carries snap requests).
- snap/: snap/1 codecs and range-proof verification.
- discv4/, enr: discovery packets, the Kademlia table, bonding, lookups; node records.
- commands: `khipu devp2p ...`.

Everything is plain classes and asyncio coroutines, to be driven by the PeerManager and
Discovery actors through their event loop; no protocol error escapes as anything but a P2PError.
"""
