"""py-evm's Chain, choosing its VM from the whole header through `ChainRules`."""

from __future__ import annotations

from eth.abc import AtomicDatabaseAPI, BlockAPI, BlockHeaderAPI, VirtualMachineAPI
from eth.chains.base import Chain
from eth.vm.chain_context import ChainContext
from eth.vm.forks import FrontierVM
from eth_typing import BlockNumber
from eth_utils import ValidationError

from khipu.chain.rules import ChainRules


class KhipuChain(Chain):
    """A py-evm chain whose fork schedule comes from a `ChainRules`."""

    rules: ChainRules = None  # type: ignore[assignment]  # set by for_rules()

    @classmethod
    def for_rules(cls, rules: ChainRules) -> type[KhipuChain]:
        """A chain class configured with `rules` and their chain id."""
        return cls.configure(  # type: ignore[return-value]
            __name__="KhipuChain",
            rules=rules,
            chain_id=rules.config.chain_id,
            # py-evm requires a configuration; every lookup goes through `rules` instead.
            vm_configuration=((BlockNumber(0), FrontierVM),),
        )

    @classmethod
    def get_vm_class_for_block_number(cls, block_number: BlockNumber) -> type[VirtualMachineAPI]:
        return cls.rules.vm_class_by_number(block_number)

    @classmethod
    def get_vm_class(cls, header: BlockHeaderAPI) -> type[VirtualMachineAPI]:
        return cls.rules.vm_class_for_header(header)

    def get_vm(self, at_header: BlockHeaderAPI | None = None) -> VirtualMachineAPI:
        header = self.ensure_header(at_header)  # type: ignore[arg-type]
        return self.get_vm_class(header)(
            header=header,
            chaindb=self.chaindb,
            chain_context=ChainContext(self.chain_id),
            consensus_context=self.consensus_context,
        )

    def validate_uncles(self, block: BlockAPI) -> None:
        """py-evm's uncle checks, then each uncle header against its parent as geth checks it.

        py-evm checks an uncle's place among the ancestors, number, timestamp and gas limit;
        geth also checks its extra data size, difficulty, and header format and base fee
        (London and later). Raises ValidationError naming the uncle.
        """
        super().validate_uncles(block)
        for uncle in block.uncles:
            # The parent exists: py-evm has just found it among the block's ancestors.
            parent = self.chaindb.get_block_header_by_hash(uncle.parent_hash)
            self._validate_uncle_header(uncle, parent)

    def _validate_uncle_header(self, uncle: BlockHeaderAPI, parent: BlockHeaderAPI) -> None:
        number = uncle.block_number
        london = self.rules.is_block_fork_active("london", number)
        if hasattr(uncle, "base_fee_per_gas") != london:
            has = "has a base fee" if not london else "has no base fee"
            raise ValidationError(
                f"uncle #{number} {has} in fork {self.rules.fork_name_by_number(number)}"
            )
        vm_class = self.rules.vm_class_by_number(number)
        try:
            vm_class.validate_header(uncle, parent)
        except ValidationError as exc:
            raise ValidationError(f"uncle #{number}: {exc}") from exc
        expected = vm_class.create_header_from_parent(parent, timestamp=uncle.timestamp)
        if uncle.difficulty != expected.difficulty:
            raise ValidationError(
                f"uncle #{number} difficulty {uncle.difficulty}, expected {expected.difficulty}"
            )


def open_chain(rules: ChainRules, db: AtomicDatabaseAPI) -> KhipuChain:
    """A chain over `db`, which must already hold a genesis header."""
    return KhipuChain.for_rules(rules)(db)
