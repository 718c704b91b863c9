"""`hil lab status`: the places of a coordinator, their health and its reason, who holds what
under which lease, and the reservations waiting (pure formatting of what the coordinator says)."""

from __future__ import annotations

from hil.lab.coordinator import Place, Reservation
from hil.lab.reservations import HEALTH_TAG, HOLDER_TAG, LEASE_TAG

HIDDEN = {HEALTH_TAG, LEASE_TAG, HOLDER_TAG, "health-checked"}


def lines(places: list[Place], reservations: list[Reservation], now: float) -> list[str]:
    out = [f"{'place':<14} {'health':<8} {'held by':<22} {'lease':>7}  tags / reason"]
    for p in sorted(places, key=lambda p: p.name):
        lease = ""
        if p.tags.get(LEASE_TAG):
            try:
                lease = f"{float(p.tags[LEASE_TAG]) - now:+.0f}s"
            except ValueError:
                lease = "bad"
        tags = " ".join(f"{k}={v}" for k, v in sorted(p.tags.items()) if k not in HIDDEN)
        out.append(f"{p.name:<14} {p.tags.get(HEALTH_TAG, 'unknown'):<8} "
                   f"{p.acquired or '-':<22} {lease:>7}  {tags}")
        if p.comment:
            out.append(f"{'':<14} {p.comment}")
    waiting = sorted((r for r in reservations if r.state == "waiting"),
                     key=lambda r: (-r.prio, r.created))
    out.append(f"reservations waiting: {len(waiting)}")
    out += [f"  {i + 1}. {r.token} {r.owner} prio {r.prio:g} wants {r.filters} since "
            f"{r.created[:19]}" for i, r in enumerate(waiting)]
    active = [r for r in reservations if r.state in ("allocated", "acquired")]
    out += [f"  {r.state}: {r.token} {r.owner} -> {r.allocation}" for r in active]
    return out
