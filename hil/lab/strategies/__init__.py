"""Strategies beyond the lab's base BoardGuestStrategy, one per module."""

from hil.lab.strategies import uboot

__all__ = ["uboot"]
