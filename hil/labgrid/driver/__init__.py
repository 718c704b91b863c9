"""hil's labgrid drivers, one per module."""
