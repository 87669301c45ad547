"""Node discovery protocol v4: signed UDP packets, endpoint proofs, a Kademlia table, lookups."""
