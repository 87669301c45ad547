"""The snap/1 state sync protocol: message codecs and Merkle range-proof verification."""
