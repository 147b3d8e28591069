"""``python -m bench structure``: how the traced modules are grouped into the package's rooms."""

from __future__ import annotations

from bench.structure import rooms


def test_a_module_is_in_its_sub_package_and_a_top_module_is_a_room_of_its_own() -> None:
    traced = {
        "remediator.store.inbox",
        "remediator.store.chain",
        "remediator.http.intake",
        "remediator.clock",
        "remediator.engine.worker",
    }
    assert rooms(traced) == {"store", "http", "clock", "engine"}


def test_the_package_itself_is_no_room() -> None:
    assert rooms({"remediator", "remediator.alerts"}) == {"alerts"}
