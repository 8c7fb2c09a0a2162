"""Directory listings the kernel caches stay true (and incoming files ask for big writes).

snapfs answers OPENDIR with ENOSYS, so the kernel opens directories
without asking and keeps every listing until snapfs drops it. Each test
lists a directory first (so the kernel holds its listing), then lets the
daemon change it behind the kernel's back, and waits for a fresh listing
to show the change; a listing nobody invalidated would stay stale for
good and the wait would fail."""

import os

from snapfs_test.harness import make_delta, wait_for


def listing(fs, *parts):
    return sorted(os.listdir(fs.path(*parts)))


def test_incoming_listing_drops_a_queued_delta(fs, tmp_path):
    fs.mkcoll("c")
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=[(1, "a")])
    dst = fs.path("c", "incoming", "d.db")
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(f.read())
        out.flush()
        assert listing(fs, "c", "incoming") == ["d.db"]
    # the daemon queues it once the writer has released it: the name leaves incoming/
    wait_for(lambda: listing(fs, "c", "incoming") == [], 10, "d.db to leave the listing of incoming/")
    fs.wait_applied("c", [sha])
    assert listing(fs, "c", "incoming") == []


def test_snapshots_and_collection_listings_show_new_snapshots(fs, tmp_path):
    fs.mkcoll("c")
    assert listing(fs, "c") == ["incoming", "rejected", "snapshots", "status"]
    assert listing(fs, "c", "snapshots") == []
    shas = []
    for i in range(3):
        p = str(tmp_path / f"d{i}.db")
        shas.append(make_delta(p, rows=[(i, "x")]))
        fs.submit("c", p)
        fs.wait_applied("c", shas)
        ids = [f"{n:08d}" for n in range(1, fs.latest_id("c") + 1)]
        # listed while the kernel held the older listing
        wait_for(lambda: listing(fs, "c", "snapshots")[-1:] == ids[-1:], 10,
                 f"snapshot {ids[-1]} in the listing of snapshots/")
        assert "latest" in listing(fs, "c"), listing(fs, "c")


def test_rejected_listing_shows_a_rejection(fs, tmp_path):
    fs.mkcoll("c")
    assert listing(fs, "c", "rejected") == []
    bad = str(tmp_path / "bad.db")
    with open(bad, "w") as f:
        f.write("not a database\n")
    fs.submit("c", bad)
    wait_for(lambda: fs.status("c")["rejected"] == 1, 30, "the rejection to be counted")
    # as soon as status counts it, a listing shows it
    assert listing(fs, "c", "rejected") == ["bad.db", "bad.db.reason"]


def test_root_listing_follows_mkdir_and_rmdir(fs):
    assert listing(fs) == [".snapfs"]
    fs.mkcoll("a")
    assert listing(fs) == [".snapfs", "a"]
    os.rmdir(fs.path("a"))
    assert listing(fs) == [".snapfs"]


def test_incoming_files_ask_for_one_mib_writes(fs):
    """cp sizes its writes from st_blksize: incoming files say 1 MiB (max_write)."""
    fs.mkcoll("c")
    p = fs.path("c", "incoming", ".part")
    with open(p, "wb") as f:
        assert os.fstat(f.fileno()).st_blksize == 1 << 20
    os.unlink(p)
