"""Checks made before anything is powered: the environment file, the exporters' configurations
and their udev matches, the place at the coordinator, the TFTP server."""
