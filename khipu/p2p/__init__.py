"""devp2p, written here: discv4, RLPx (ECIES, frames, snappy), the p2p, eth and snap protocols."""
