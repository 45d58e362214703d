"""model.files.atomic_output: the new file or the old one, never half of one."""

import pytest

from model.files import atomic_output


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "weights.bin"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["weights.bin"]


def test_a_write_that_fails_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]


def test_prefix_and_suffix_name_the_temporary(tmp_path):
    with atomic_output(tmp_path / "entry.json", prefix="partial-", suffix=".json") as tmp:
        assert tmp.name.startswith("partial-") and tmp.name.endswith(".json")
        tmp.write_text("{}")
    assert (tmp_path / "entry.json").read_text() == "{}"
