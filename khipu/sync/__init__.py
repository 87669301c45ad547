"""Chain synchronisation: fast sync (pivot, headers, bodies, receipts, state), regular sync."""
