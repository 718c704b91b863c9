"""Firmware builds: board and guest images from Debian's archive, cached by content."""
