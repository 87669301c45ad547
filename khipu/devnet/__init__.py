"""Deterministic development chains: genesis and signed blocks of chosen workload profiles."""
