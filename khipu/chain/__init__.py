"""Chain rules: genesis, the fork schedule mapped onto py-evm, header validation, fork ids, import."""
