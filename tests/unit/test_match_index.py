"""Which places a resource update concerns, kept as places change (the coordinator client's
MatchIndex): a rack's every lock and release updates resources, and each client receives all."""

from __future__ import annotations

from hil.scheduling.coordinator import MatchIndex


def test_a_resource_concerns_the_places_whose_matches_name_its_exporter_and_group() -> None:
    index = MatchIndex()
    index.put("p0", (("host-a", "p0"),))
    index.put("p1", (("host-a", "p1"), ("host-b", "p1")))
    index.put("any", (("host-*", "p?"),))
    assert index.matching("host-a", "p0") == {"p0", "any"}
    assert index.matching("host-b", "p1") == {"p1", "any"}
    assert index.matching("host-b", "p0") == {"any"}
    assert index.matching("other", "p0") == set()


def test_a_place_whose_matches_change_or_that_is_deleted_is_forgotten_where_it_was() -> None:
    index = MatchIndex()
    index.put("p0", (("host-a", "p0"),))
    index.put("p0", (("host-b", "p0"),))  # moved to another exporter host
    assert index.matching("host-a", "p0") == set()
    assert index.matching("host-b", "p0") == {"p0"}
    index.put("p0", (("host-*", "p0"),))
    assert index.matching("host-c", "p0") == {"p0"}
    index.put("p0", None)
    assert index.matching("host-b", "p0") == set() and index.matching("host-c", "p0") == set()
