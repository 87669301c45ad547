"""Osaka's block: Prague's layout (header of 21 fields, typed transactions, withdrawals).

Osaka adds no header field and no transaction type, so the header class stays
PragueBlockHeader: it is also what py-evm's database decodes every 21-field header into.
"""

from __future__ import annotations

from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader

OsakaBlockHeader = PragueBlockHeader


class OsakaBlock(PragueBlock):
    """A block of the Osaka fork, encoded as Prague's."""
