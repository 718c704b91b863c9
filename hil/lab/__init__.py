"""The name environment files imported before hil's layout by role: `imports: [hil.lab]` keeps
registering every class that `hil.labgrid` does."""

from hil import labgrid

__all__ = ["labgrid"]
