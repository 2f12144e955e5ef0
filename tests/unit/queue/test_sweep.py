"""The spool sweep's pure decisions: which files are old enough, which are orphans, which
entries have lost their body."""

from __future__ import annotations

from appliance.queue.sweep import bodiless, orphan_candidates, orphans


def test_only_files_older_than_the_grace_period_are_candidates() -> None:
    files = [("ab/old.eml", 100.0), ("ab/edge.eml", 400.0), ("ab/young.eml", 401.0)]
    assert orphan_candidates(files, now=1000.0, grace=600.0) == ["ab/old.eml", "ab/edge.eml"]
    assert orphan_candidates(files, now=1000.0, grace=0.0) == [p for p, _ in files]


def test_orphans_are_the_candidates_no_entry_refers_to() -> None:
    assert orphans(["a/1.eml", "a/2.eml", "a/3.eml"], {"a/2.eml", "b/9.eml"}) == ["a/1.eml", "a/3.eml"]
    assert orphans([], {"a/1.eml"}) == []


def test_bodiless_entries_are_found_and_each_path_is_looked_at_once() -> None:
    looked: list[str] = []

    def exists(path: str) -> bool:
        looked.append(path)
        return path != "a/gone.eml"

    entries = [(1, "a/here.eml"), (2, "a/gone.eml"), (3, "a/gone.eml"), (4, ""), (5, "a/here.eml")]
    assert bodiless(entries, exists) == [2, 3]
    assert sorted(looked) == ["a/gone.eml", "a/here.eml"]
