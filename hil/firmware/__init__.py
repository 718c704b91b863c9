"""The builders of `firmware/` (`hil firmware build`): board and guest images from Debian's
archive, the patched kernels and QEMU, cached by content.

The modules import each other relatively: a builder's own source is an input of its cache key,
so a move of this package must not rebuild what it builds."""
