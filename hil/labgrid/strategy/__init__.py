"""hil's labgrid strategies, one per module: the base board/guest strategy of the virtual
boards, and those of boards that boot through U-Boot and TFTP or from an SD card."""
