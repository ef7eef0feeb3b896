"""Open descriptors follow renames, under roard's names and the process's own."""

from __future__ import annotations

from roard.tracking.fds import FdTable, OpenFile


def test_a_rename_moves_open_files_and_the_names_their_process_saw() -> None:
    """A container renames the file it holds open: roard's path and the path seen inside
    the container both follow (and a file known without a seen path keeps none)."""
    table = FdTable()
    table.set(1, 3, OpenFile("/var/lib/ctr/data/tmp.bin", 1, 10, 0, True, "/data/tmp.bin"))
    table.set(1, 4, OpenFile("/var/lib/ctr/data/other", 1, 11, 0, True))
    names = ("/var/lib/ctr/data/tmp.bin", "/var/lib/ctr/data/final.bin")
    table.rename(*names, seen=("/data/tmp.bin", "/data/final.bin"))
    moved = table.pop(1, 3)
    assert moved is not None
    assert (moved.path, moved.seen) == ("/var/lib/ctr/data/final.bin", "/data/final.bin")
    untouched = table.pop(1, 4)
    assert untouched is not None and untouched.seen == ""
