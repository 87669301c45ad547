"""Storage: the Kesque log store, the chain database and the py-evm adapter."""
