"""Supervision for Pykka actors: restart strategies, backoff, health monitoring, typed messages."""
