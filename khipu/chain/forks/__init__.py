"""py-evm VM classes for every mainnet fork, Frontier to Osaka, and per-fork blob parameters.

`FORK_VM_CLASSES` names the VM class of each fork (py-evm's up to Prague, ours for Osaka); the fork
schedule (khipu.chain.rules) picks among them and configures them. A blob-parameter-only fork
(EIP-7892: bpo1, bpo2, ...) is Osaka with other blob numbers:
`with_blob_schedule(OsakaVM, 10, 15, 8_346_193, fork_name="bpo1")`, with the numbers of the genesis
`blobSchedule` entry of the same name (read by khipu.chain.config). Cancun and Prague take
their genesis entries the same way.
"""

from __future__ import annotations

from eth.vm.base import VM
from eth.vm.forks.arrow_glacier import ArrowGlacierVM
from eth.vm.forks.berlin import BerlinVM
from eth.vm.forks.byzantium import ByzantiumVM
from eth.vm.forks.cancun import CancunVM
from eth.vm.forks.constantinople import ConstantinopleVM
from eth.vm.forks.frontier import FrontierVM
from eth.vm.forks.gray_glacier import GrayGlacierVM
from eth.vm.forks.homestead import HomesteadVM
from eth.vm.forks.istanbul import IstanbulVM
from eth.vm.forks.london import LondonVM
from eth.vm.forks.muir_glacier import MuirGlacierVM
from eth.vm.forks.paris import ParisVM
from eth.vm.forks.petersburg import PetersburgVM
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.shanghai import ShanghaiVM
from eth.vm.forks.spurious_dragon import SpuriousDragonVM
from eth.vm.forks.tangerine_whistle import TangerineWhistleVM

from .blob_forks import BlobScheduleState, BlobScheduleVM, with_blob_schedule
from .blob_schedule import (
    CANCUN_BLOB_SCHEDULE,
    MAINNET_BPO1_BLOB_SCHEDULE,
    MAINNET_BPO2_BLOB_SCHEDULE,
    OSAKA_BLOB_SCHEDULE,
    PRAGUE_BLOB_SCHEDULE,
    BlobSchedule,
    InvalidBlobSchedule,
)
from .osaka import OsakaVM

# In activation order. "paris" is the merge; EIP-155 and EIP-158 share spurious_dragon.
FORK_VM_CLASSES: dict[str, type[VM]] = {
    "frontier": FrontierVM,
    "homestead": HomesteadVM,
    "tangerine_whistle": TangerineWhistleVM,
    "spurious_dragon": SpuriousDragonVM,
    "byzantium": ByzantiumVM,
    "constantinople": ConstantinopleVM,
    "petersburg": PetersburgVM,
    "istanbul": IstanbulVM,
    "muir_glacier": MuirGlacierVM,
    "berlin": BerlinVM,
    "london": LondonVM,
    "arrow_glacier": ArrowGlacierVM,
    "gray_glacier": GrayGlacierVM,
    "paris": ParisVM,
    "shanghai": ShanghaiVM,
    "cancun": CancunVM,
    "prague": PragueVM,
    "osaka": OsakaVM,
}

# The blob parameters each blob fork ships with, for a genesis without a blobSchedule entry.
DEFAULT_BLOB_SCHEDULES: dict[str, BlobSchedule] = {
    "cancun": CANCUN_BLOB_SCHEDULE,
    "prague": PRAGUE_BLOB_SCHEDULE,
    "osaka": OSAKA_BLOB_SCHEDULE,
}

__all__ = [
    "DEFAULT_BLOB_SCHEDULES",
    "FORK_VM_CLASSES",
    "MAINNET_BPO1_BLOB_SCHEDULE",
    "MAINNET_BPO2_BLOB_SCHEDULE",
    "BlobSchedule",
    "BlobScheduleState",
    "BlobScheduleVM",
    "InvalidBlobSchedule",
    "OsakaVM",
    "with_blob_schedule",
]
