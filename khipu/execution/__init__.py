"""Parallel block execution: scheduler, worker process pool, read and write sets, merge."""
