"""Chain synchronisation: fast sync (pivot, headers, bodies, receipts, snap state) and regular sync."""
