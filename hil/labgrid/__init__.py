"""What a labgrid environment file imports: hil's drivers and strategies.

Importing this package registers every class an environment file of `places/` can name with
labgrid's factory (`imports: [hil.labgrid]`); a unit test builds every target of every file.
Laid out as labgrid's own tree is: one class per module under `driver/` and `strategy/`.
"""

from hil.labgrid.driver import guestvmm, powerswitch, tftpserver, virtualboard
from hil.labgrid.strategy import boardguest, sdmux
from hil.labgrid.strategy import uboot as uboot_strategy

__all__ = ["boardguest", "guestvmm", "powerswitch", "sdmux", "tftpserver", "uboot_strategy",
           "virtualboard"]
