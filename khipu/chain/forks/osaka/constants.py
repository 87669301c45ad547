"""Constants of the Osaka fork (EIP-7607, execution layer of Fusaka)."""

from __future__ import annotations

from eth import constants as eth_constants
from eth._utils.address import force_bytes_to_address

# EIP-7825: transaction gas limit cap
MAX_TRANSACTION_GAS_LIMIT = 2**24

# EIP-7594 (PeerDAS), its execution-layer part: blobs one transaction may carry
MAX_BLOBS_PER_TRANSACTION = 6

# EIP-7934: RLP execution block size limit
MAX_BLOCK_SIZE = 10 * 1024 * 1024
SAFETY_MARGIN = 2 * 1024 * 1024
MAX_RLP_BLOCK_SIZE = MAX_BLOCK_SIZE - SAFETY_MARGIN

# EIP-7939: count leading zeros
CLZ_OPCODE = 0x1E
CLZ_GAS = eth_constants.GAS_LOW

# EIP-7823 and EIP-7883: MODEXP input bounds and repricing
MODEXP_ADDRESS = force_bytes_to_address(b"\x05")
MODEXP_MAX_INPUT_LENGTH = 1024
MODEXP_MIN_GAS = 500

# EIP-7951: secp256r1 (P-256) signature verification
P256VERIFY_ADDRESS = force_bytes_to_address(b"\x01\x00")
P256VERIFY_GAS = 6900
