"""Deltas in: cp, mv, rsync and a shell redirect each queue a delta exactly
once; dot-files and files still open for writing are never queued; a
delta past max_delta_size fails with EFBIG."""

import errno
import os

import pytest

from snapfs_test.harness import make_delta, run, wait_for


def assert_applied_once(fs, coll, sha, name, rows):
    fs.wait_applied(coll, [sha])
    st = fs.wait_idle(coll)
    ledger = fs.query(coll, "SELECT name FROM _snapfs_ledger WHERE lower(sha256) = ?", (sha,))
    assert ledger == [(name,)], ledger
    assert fs.query(coll, "SELECT count(*) FROM _snapfs_ledger") == [(1,)]
    assert st["applied_total"] == 1 and st["duplicate_total"] == 0, st
    assert st["rejected_total"] == 0 and st["rejected"] == 0, st
    assert fs.query(coll, "SELECT id, body FROM items ORDER BY id") == rows
    assert os.listdir(fs.path(coll, "incoming")) == [], "a queued delta is still in incoming/"


ROWS = [(1, "one"), (2, "two")]


def test_cp(fs, coll, tmp_path):
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=ROWS)
    run(["cp", src, fs.path(coll, "incoming", "d.db")])
    assert_applied_once(fs, coll, sha, "d.db", ROWS)


def test_mv_from_another_filesystem(fs, coll, tmp_path):
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=ROWS)
    run(["mv", src, fs.path(coll, "incoming", "d.db")])
    assert_applied_once(fs, coll, sha, "d.db", ROWS)


def test_cp_to_dot_name_then_mv(fs, coll, tmp_path):
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=ROWS)
    tmp = fs.path(coll, "incoming", ".d.db.part")
    run(["cp", src, tmp])
    run(["mv", tmp, fs.path(coll, "incoming", "d.db")])
    assert_applied_once(fs, coll, sha, "d.db", ROWS)


def test_rsync(fs, coll, tmp_path):
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=ROWS)
    # rsync writes .d.db.XXXXXX, closes it, then renames it to d.db
    run(["rsync", src, fs.path(coll, "incoming") + "/"])
    assert_applied_once(fs, coll, sha, "d.db", ROWS)


def test_shell_redirect(fs, coll, tmp_path):
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=ROWS)
    run(["sh", "-c", 'cat "$1" > "$2"', "sh", src, fs.path(coll, "incoming", "d.db")])
    assert_applied_once(fs, coll, sha, "d.db", ROWS)


def test_file_open_for_writing_is_not_queued(fs, coll, tmp_path):
    a_src, b_src = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sha_a = make_delta(a_src, rows=[(1, "a")])
    sha_b = make_delta(b_src, rows=[(2, "b")])
    a = fs.path(coll, "incoming", "a.db")
    fd = os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with open(a_src, "rb") as f:
            os.write(fd, f.read())
        # a reader opening and closing it must not queue it either
        with open(a, "rb") as f:
            f.read()
        fs.submit(coll, b_src)
        fs.wait_applied(coll, [sha_b])
        # had a.db been queued, it would be merged before the queue empties
        fs.wait_idle(coll)
        assert sha_a not in fs.ledger(coll)
        assert "a.db" in os.listdir(fs.path(coll, "incoming"))
    finally:
        os.close(fd)
    fs.wait_applied(coll, [sha_a])
    assert fs.query(coll, "SELECT id, body FROM items ORDER BY id") == [(1, "a"), (2, "b")]


def test_dot_file_is_not_queued_until_renamed(fs, coll, tmp_path):
    a_src, b_src = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sha_a = make_delta(a_src, rows=[(1, "a")])
    sha_b = make_delta(b_src, rows=[(2, "b")])
    dot = fs.path(coll, "incoming", ".a.db")
    run(["cp", a_src, dot])
    fs.submit(coll, b_src)
    fs.wait_applied(coll, [sha_b])
    # renaming to another dot name does not queue it either
    os.rename(dot, fs.path(coll, "incoming", ".a.db.2"))
    # had it been queued, it would be merged before the queue empties
    fs.wait_idle(coll)
    assert sha_a not in fs.ledger(coll)
    assert ".a.db.2" in os.listdir(fs.path(coll, "incoming"))
    os.rename(fs.path(coll, "incoming", ".a.db.2"), fs.path(coll, "incoming", "a.db"))
    fs.wait_applied(coll, [sha_a])
    st = fs.wait_idle(coll)
    assert st["applied_total"] == 2 and st["duplicate_total"] == 0, st


def test_incoming_files_can_be_renamed_and_unlinked(fs, coll):
    inc = fs.path(coll, "incoming")
    with open(os.path.join(inc, ".scratch"), "wb") as f:
        f.write(b"half a delta")
    os.rename(os.path.join(inc, ".scratch"), os.path.join(inc, ".scratch2"))
    assert os.path.getsize(os.path.join(inc, ".scratch2")) == len(b"half a delta")
    os.unlink(os.path.join(inc, ".scratch2"))
    assert os.listdir(inc) == []
    assert fs.status(coll)["queued"] == 0 and fs.status(coll)["rejected"] == 0


@pytest.fixture
def small(make_fs):
    fs = make_fs(opts=("batch_delay=50", "max_delta_size=64K"))
    fs.mkcoll("c")
    return fs


def test_write_past_max_delta_size_is_efbig(small):
    fs = small
    p = fs.path("c", "incoming", ".big")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"x" * 64_000) == 64_000  # within 64K, however K is counted
        with pytest.raises(OSError) as e:
            n = 0
            while n <= 64 * 1024:  # a short write must still end in EFBIG
                n += os.write(fd, b"y" * 2000)
        assert e.value.errno == errno.EFBIG, e.value
    finally:
        os.close(fd)
    assert os.path.getsize(p) <= 64 * 1024
    os.unlink(p)


def test_cp_past_max_delta_size_fails_and_mount_keeps_working(small, tmp_path):
    fs = small
    big = str(tmp_path / "big.db")
    make_delta(big, rows=[(i, "z" * 200) for i in range(1000)])
    assert os.path.getsize(big) > 64 * 1024
    p = run(["cp", big, fs.path("c", "incoming", "big.db")], check=False)
    assert p.returncode != 0 and "File too large" in p.stderr, p
    good = str(tmp_path / "good.db")
    sha = make_delta(good, rows=[(1, "fits")])
    fs.submit("c", good)
    fs.wait_applied("c", [sha])
    assert fs.query("c", "SELECT body FROM items WHERE id = 1") == [("fits",)]
    # whatever became of the cut-off copy, it was not applied
    assert fs.query("c", "SELECT count(*) FROM items") == [(1,)]
    wait_for(lambda: fs.status("c")["queued"] == 0, 30, "the queue to drain")


def test_same_name_reused_for_new_content(fs, coll, tmp_path):
    """Producers reuse file names: each new content is a new delta."""
    shas = []
    for i in range(3):
        src = str(tmp_path / f"v{i}.db")
        shas.append(make_delta(src, rows=[(1, f"v{i}")]))
        fs.submit(coll, src, name="update.db")
        fs.wait_applied(coll, shas[-1:])
    assert fs.query(coll, "SELECT body FROM items") == [("v2",)]
    assert fs.query(coll, "SELECT name FROM _snapfs_ledger ORDER BY seq") == [("update.db",)] * 3
