"""`hil lab status`: the places of a coordinator, their health and its reason, who holds what
under which lease, and the reservations waiting (pure formatting of what the coordinator says)."""

from __future__ import annotations

import time

from hil.scheduling.coordinator import Place, Reservation
from hil.scheduling.placewatch import WATCH_TAG
from hil.scheduling.reservations import HEALTH_TAG, HOLDER_TAG, LEASE_TAG, lease_seconds

HIDDEN = {HEALTH_TAG, LEASE_TAG, HOLDER_TAG, "health-checked", WATCH_TAG}


def lines(places: list[Place], reservations: list[Reservation], now: float) -> list[str]:
    out = [f"{'place':<14} {'health':<8} {'held by':<34} {'lease':>7}  tags / reason"]
    for p in sorted(places, key=lambda p: p.name):
        lease = ""
        if p.tags.get(LEASE_TAG):
            # Left of the lease by the holder's clock; the janitor judges it on its own.
            seconds = lease_seconds(p.tags[LEASE_TAG])
            renewed = p.tags[LEASE_TAG].partition("+")[0]
            lease = (f"{float(renewed) + seconds - now:+.0f}s"
                     if seconds is not None and renewed.isdigit() else "bad")
        tags = " ".join(f"{k}={v}" for k, v in sorted(p.tags.items()) if k not in HIDDEN)
        out.append(f"{p.name:<14} {p.tags.get(HEALTH_TAG, 'unknown'):<8} "
                   f"{p.acquired or '-':<34} {lease:>7}  {tags}")
        if p.comment:
            out.append(f"{'':<14} {p.comment}")
    waiting = sorted((r for r in reservations if r.state == "waiting"),
                     key=lambda r: (-r.prio, r.created))
    out.append(f"reservations waiting: {len(waiting)}")
    out += [f"  {i + 1}. {r.token} {r.owner} prio {r.prio:g} wants "
            f"{' '.join(f'{k}={v}' for k, v in r.filters.items())} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created))}"
            for i, r in enumerate(waiting)]
    active = [r for r in reservations if r.state in ("allocated", "acquired")]
    out += [f"  {r.state}: {r.token} {r.owner} -> {r.allocation}" for r in active]
    return out
