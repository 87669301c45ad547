"""The eth wire protocol, version 68: Status with fork ids, block and receipt exchange."""
