"""hil: hardware-in-the-loop qualification of multi-IRQ virtio-mmio on arm64 GICv2 boards."""

__version__ = "0.1.0"
