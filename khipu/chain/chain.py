"""py-evm's Chain, choosing its VM from the whole header through `ChainRules`."""

from __future__ import annotations

from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI, VirtualMachineAPI
from eth.chains.base import Chain
from eth.vm.chain_context import ChainContext
from eth.vm.forks import FrontierVM
from eth_typing import BlockNumber

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


def open_chain(rules: ChainRules, db: AtomicDatabaseAPI) -> KhipuChain:
    """A chain over `db`, which must already hold a genesis header."""
    return KhipuChain.for_rules(rules)(db)
