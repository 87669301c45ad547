"""The snap/1 state sync protocol: message codecs, Merkle range-proof verification, trie-node
answers checked node by node (trie_node_check.py), and serving account and storage ranges,
bytecodes and trie nodes from the node's own state (serving.py over a StateReader, abc.py; tries
walked node by node in trie_reader.py)."""
