"""Building dev blocks on py-evm with the chain rules the importer uses.

Each block is assembled the way a consensus client asks an execution client to: a header from
the parent (time, fee recipient, prevrandao, parent beacon root), the signed transactions and the
withdrawals; py-evm's `import_block` then executes them and fills every computed field (state
root, receipts root, bloom, gas used, requests hash), exactly as the importer recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth.vm.chain_context import ChainContext
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_hash.auto import keccak
from eth_typing import Address
from eth_utils import ValidationError

from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.config import Genesis
from khipu.chain.genesis import build_genesis_header, write_genesis_state
from khipu.chain.rules import ChainRules
from khipu.devnet.genesis import DevAccount
from khipu.devnet.workload import PlannedTx, PlannedWithdrawal, TxKind

BLOCK_TIME = 12  # seconds between blocks, as on mainnet
FEE_RECIPIENT = bytes(keccak(b"khipu dev fee recipient"))[12:]
EXTRA_DATA = b"khipu devnet"


def receipt_succeeded(receipt: ReceiptAPI) -> bool:
    """Whether a post-Byzantium receipt has status 1 (EIP-658 keeps it in the state root field)."""
    return receipt.state_root == b"\x01"


class GenerationError(RuntimeError):
    """A dev block could not be built as planned; names the block and, if any, the transaction."""

    def __init__(self, number: int, detail: str) -> None:
        super().__init__(f"dev block #{number}: {detail}")
        self.number = number
        self.detail = detail


@dataclass(frozen=True)
class BuiltBlock:
    """A sealed block with the receipts of its transactions."""

    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]


class DevChainBuilder:
    """Builds blocks on top of a genesis, in memory, one after another."""

    def __init__(self, genesis_json: dict[str, Any]) -> None:
        self.genesis = Genesis.from_json(genesis_json)
        self.rules = ChainRules(self.genesis.config)
        self.chain_id = self.rules.config.chain_id
        db = AtomicDB()
        state_root = write_genesis_state(self.genesis, db)
        genesis_header = build_genesis_header(self.genesis, self.rules, state_root)
        ChainDB(db).persist_header(genesis_header)
        self.chain: KhipuChain = open_chain(self.rules, db)
        self.head: BlockHeaderAPI = genesis_header

    def next_header(self) -> BlockHeaderAPI:
        """The header template of the next block: its number, time and base fee are final."""
        parent = self.head
        number = parent.block_number + 1
        timestamp = self.genesis.timestamp + BLOCK_TIME * number
        vm_class = self.rules.vm_class(number, timestamp, 0)
        if not self.rules.is_time_fork_active("cancun", timestamp):
            raise GenerationError(number, "dev chains need Cancun or later active at genesis")
        seed = number.to_bytes(8, "big")
        return vm_class.create_header_from_parent(
            parent,
            timestamp=timestamp,
            gas_limit=parent.gas_limit,
            coinbase=FEE_RECIPIENT,
            extra_data=EXTRA_DATA,
            mix_hash=keccak(b"khipu dev prevrandao " + seed),
            parent_beacon_block_root=keccak(b"khipu dev beacon root " + seed),
        )

    def sign(
        self, template: BlockHeaderAPI, planned: PlannedTx, account: DevAccount
    ) -> SignedTransactionAPI:
        """`planned` signed by `account`, paying at most twice the block's base fee plus tip."""
        builder = self.rules.vm_class_for_header(template).get_transaction_builder()
        base_fee = int(template.base_fee_per_gas or 0)
        to = Address(planned.to)
        access_list = [(Address(a), list(slots)) for a, slots in planned.access_list]
        if planned.kind is TxKind.DYNAMIC_FEE:
            unsigned: Any = builder.new_unsigned_dynamic_fee_transaction(  # type: ignore[attr-defined]
                self.chain_id, planned.nonce, planned.tip, 2 * base_fee + planned.tip,
                planned.gas, to, planned.value, planned.data, access_list,
            )  # fmt: skip
        elif planned.kind is TxKind.ACCESS_LIST:
            unsigned = builder.new_unsigned_access_list_transaction(  # type: ignore[attr-defined]
                self.chain_id, planned.nonce, base_fee + planned.tip, planned.gas, to,
                planned.value, planned.data, access_list,
            )  # fmt: skip
        else:
            legacy = builder.create_unsigned_transaction(
                nonce=planned.nonce, gas_price=base_fee + planned.tip, gas=planned.gas,
                to=to, value=planned.value, data=planned.data,
            )  # fmt: skip
            return legacy.as_signed_transaction(account.private_key, chain_id=self.chain_id)
        # The signed envelope comes back as London's class; the fork's own class encodes in blocks.
        signed = unsigned.as_signed_transaction(account.private_key)
        return builder.decode(signed.encode())

    def build_block(
        self,
        template: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        withdrawals: Sequence[PlannedWithdrawal],
    ) -> BuiltBlock:
        """Execute `transactions` and `withdrawals` on the head, seal the block, make it the head.

        Raises GenerationError if py-evm rejects the block (a transaction over the gas limit,
        a bad nonce, too little balance).
        """
        number = template.block_number
        gas = sum(tx.gas for tx in transactions)
        if gas > template.gas_limit:
            raise GenerationError(
                number,
                f"transactions need {gas} gas, over the block gas limit {template.gas_limit}: "
                "use fewer transactions per block",
            )
        vm_class = self.rules.vm_class_for_header(template)
        block_class = vm_class.get_block_class()
        proposal = block_class(
            template,
            transactions=list(transactions),
            uncles=[],
            withdrawals=[
                Withdrawal(w.index, w.validator_index, Address(w.address), w.amount_gwei)
                for w in withdrawals
            ],
        )  # type: ignore[call-arg]
        vm = vm_class(
            header=template,
            chaindb=self.chain.chaindb,
            chain_context=ChainContext(self.chain_id),
            consensus_context=self.chain.consensus_context,
        )
        try:
            block = vm.import_block(proposal).block
        except ValidationError as exc:
            raise GenerationError(number, f"py-evm rejected the block: {exc}") from exc
        self.chain.chaindb.persist_block(block)
        self.head = block.header
        receipts = tuple(block.get_receipts(self.chain.chaindb))
        return BuiltBlock(block, receipts)
