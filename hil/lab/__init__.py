"""labgrid integration: drivers, the board/guest strategy and the pytest plugin.

Importing this package registers the drivers and the strategy with labgrid's factory, so an
environment file can name them after `imports: [hil.lab]`.
"""

from hil.lab import drivers, strategy, tftpserver
from hil.lab.power import driver as power
from hil.lab.strategies import sdmux as sdmux_strategy
from hil.lab.strategies import uboot as uboot_strategy

__all__ = ["drivers", "power", "sdmux_strategy", "strategy", "tftpserver",
           "uboot_strategy"]
