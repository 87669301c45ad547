"""Chain rules: genesis, fork schedule on py-evm, header validation, fork ids, import."""
