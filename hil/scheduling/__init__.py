"""Sharing a lab's places: one coordinator client on labgrid's API, reservations and leases,
the janitor and its health checks, status, and the scheduler benchmark."""
