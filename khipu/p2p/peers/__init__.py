"""Peers as actors: the PeerManager (a supervisor) and one PeerActor per connected peer.

- roster.py     who is connected; admission (limits after geth's dial ratio, bad list, duplicates)
- dialing.py    which nodes to dial next, with backoff
- scoring.py    offences, scores and the bad list
- bad_list_file.py the bad list on disk (DATADIR/badpeers.json), so it survives restarts
- validation.py checks of what peers send (bodies against header roots)
- connection.py the event-loop side of a connection, and the PeerLink actors act through
- peer_actor.py one peer's logic: serving, the head check, its score
- requests.py   checked requests to a peer for any component (sync), offences reported
- manager.py    the PeerManager
- board.py      what admin_peers, khipu_health and /metrics show
- messages.py   the messages between them
"""
