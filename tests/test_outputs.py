"""Outputs are checked before any work (issue 23 item 4): a path that cannot be written is one line."""

from __future__ import annotations

import pytest

from okspose.errors import OksposeError
from okspose.fileio import check_writable


def test_writable_paths_pass(tmp_path):
    assert check_writable(tmp_path / "new/sub/results.json", "results file") == tmp_path / "new/sub/results.json"
    (tmp_path / "old.json").write_text("{}")
    check_writable(tmp_path / "old.json", "results file")
    check_writable(tmp_path, "output folder")
    check_writable(tmp_path / "new/out", "output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # the probe leaves nothing behind


@pytest.mark.parametrize("target, kind, words", [
    ("file.txt", "output folder", "is an existing file"),
    ("folder", "results file", "is an existing folder"),
    ("file.txt/results.json", "results file", "file.txt is a file, not a folder"),
    ("file.txt/deeper/out", "output folder", "file.txt is a file, not a folder"),
])
def test_a_path_that_cannot_be_written_is_one_line(tmp_path, target, kind, words):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OksposeError, match=words) as err:
        check_writable(tmp_path / target, kind)
    assert kind in str(err.value) and "\n" not in str(err.value)


def test_a_folder_nobody_may_write_is_refused():
    """/proc refuses new files even to root, where a chmod'ed folder would not."""
    with pytest.raises(OksposeError, match="cannot write the results file in /proc"):
        check_writable("/proc/okspose/results.json", "results file")
