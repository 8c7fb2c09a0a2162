"""Reading sealed snapshots: the manifest tells the truth (sha256sum,
size, rows, deltas), sqlite3 -readonly works, nothing outside incoming/
can be changed, retention never pulls a snapshot from under a reader,
and readers copying latest while deltas keep arriving only ever get
whole, valid files."""

import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading

import pytest

from snapfs_test.harness import (SNAPFS_BIN, assert_readonly, integrity, make_delta, run, sha256_fd, sha256_file,
                     verify_snapshot, wait_for)


def apply(fs, coll, tmp_path, name, rows=(), deletes=()):
    p = str(tmp_path / name)
    sha = make_delta(p, rows=rows, deletes=deletes)
    fs.submit(coll, p)
    fs.wait_applied(coll, [sha])
    return sha


def test_manifest_describes_the_snapshot(fs, coll, tmp_path):
    apply(fs, coll, tmp_path, "a.db", rows=[(i, "a") for i in range(10)])
    first = fs.latest_id(coll)
    sha_b = apply(fs, coll, tmp_path, "b.db", rows=[(i, "b") for i in range(5, 20)], deletes=[0])
    sid = fs.latest_id(coll)
    assert sid > first
    m = fs.manifest(coll, sid)
    db = fs.snap_db(coll, sid)
    version = re.search(r"snapfs version (\S+)", run([SNAPFS_BIN, "-V"], check=False).stdout).group(1)
    assert m["format"] == 1 and m["snapfs_version"] == version, m
    assert m["collection"] == coll and m["id"] == sid and m["snapshot"] == "%08d" % sid
    assert m["file"] == coll + ".sqlite3"
    created = datetime.datetime.fromisoformat(m["created"].replace("Z", "+00:00"))
    assert created.tzinfo is not None, "created is not RFC 3339 with a zone"
    assert abs(created.timestamp() - m["created_unix"]) < 2
    assert m["size"] == os.path.getsize(db) == m["page_size"] * m["page_count"]
    assert m["sha256"] == run(["sha256sum", db]).stdout.split()[0]
    assert m["integrity_check"] == "ok"
    (ledger_max,) = fs.query(coll, "SELECT max(seq) FROM _snapfs_ledger", sid=sid)[0]
    assert m["ledger_max"] == ledger_max
    assert fs.manifest(coll, first)["ledger_max"] < ledger_max
    assert m["tables"]["items"] == 19
    for t, n in m["tables"].items():
        assert fs.query(coll, f'SELECT count(*) FROM "{t}"', sid=sid) == [(n,)], t
    new = fs.query(coll, "SELECT seq, name, lower(sha256) FROM _snapfs_ledger WHERE seq > ? ORDER BY seq",
                   (fs.manifest(coll, first)["ledger_max"],), sid=sid)
    assert [(d["seq"], d["name"], d["sha256"].lower()) for d in m["deltas"]] == new
    assert new[-1][2] == sha_b

    st = fs.status(coll)
    ls = st["last_snapshot"]
    assert ls["id"] == sid and ls["snapshot"] == m["snapshot"] and ls["created"] == m["created"]
    assert ls["size"] == m["size"] and ls["sha256"] == m["sha256"] and ls["ledger_max"] == m["ledger_max"]
    assert st["snapshots"] == len(fs.snapshot_ids(coll))


def test_sha256sum_of_every_snapshot_matches_manifest(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=50", "keep=100"))
    fs.mkcoll("c")
    for i in range(6):
        apply(fs, "c", tmp_path, f"d{i}.db", rows=[(i * 100 + k, "x" * k) for k in range(100)])
    ids = fs.snapshot_ids("c")
    assert len(ids) >= 6
    dbs = [fs.snap_db("c", s) for s in ids]
    out = run(["sha256sum", *dbs]).stdout.splitlines()
    for line, sid in zip(out, ids):
        assert line.split()[0] == fs.manifest("c", sid)["sha256"], f"snapshot {sid}"
        assert sorted(os.listdir(fs.snap_dir("c", sid))) == sorted(["MANIFEST.json", "c.sqlite3"])


def test_sqlite3_cli_readonly_on_latest(fs, coll, tmp_path):
    apply(fs, coll, tmp_path, "a.db", rows=[(1, "one"), (2, "two")])
    latest_db = fs.path(coll, "latest", coll + ".sqlite3")
    p = run(["sqlite3", "-readonly", latest_db,
             "SELECT count(*) FROM items; SELECT body FROM items WHERE id = 2; PRAGMA integrity_check;"])
    assert p.stdout.split() == ["2", "two", "ok"], p.stdout
    # a writing sqlite3 is refused and changes nothing
    p = run(["sqlite3", latest_db, "INSERT INTO items VALUES(3, 'three');"], check=False)
    assert p.returncode != 0, "sqlite3 wrote into a snapshot"
    sid = fs.latest_id(coll)
    verify_snapshot(fs.snap_dir(coll, sid), coll)
    assert sorted(os.listdir(fs.snap_dir(coll, sid))) == ["MANIFEST.json", coll + ".sqlite3"]


def test_nothing_outside_incoming_is_writable(fs, coll, tmp_path):
    apply(fs, coll, tmp_path, "a.db", rows=[(1, "one")])
    bad = str(tmp_path / "bad.db")
    with open(bad, "w") as f:
        f.write("junk\n")
    fs.submit(coll, bad)
    fs.wait_rejected(coll, "bad.db")
    sid = fs.latest_id(coll)
    d = fs.snap_dir(coll, sid)
    db = fs.snap_db(coll, sid)
    man = os.path.join(d, "MANIFEST.json")
    rej = fs.path(coll, "rejected", "bad.db")

    for path in (db, man, rej, rej + ".reason"):
        assert_readonly(lambda: os.open(path, os.O_WRONLY), f"open {path} for writing")
        assert_readonly(lambda: os.open(path, os.O_RDWR), f"open {path} read-write")
        assert_readonly(lambda: os.open(path, os.O_WRONLY | os.O_TRUNC), f"open {path} with O_TRUNC")
        assert_readonly(lambda: os.open(path, os.O_WRONLY | os.O_APPEND), f"open {path} for append")
        assert_readonly(lambda: os.truncate(path, 0), f"truncate {path}")
        if path in (db, man):  # rm in rejected/ is how it is cleaned (test_hardening)
            assert_readonly(lambda: os.unlink(path), f"unlink {path}")
        assert_readonly(lambda: os.rename(path, path + ".x"), f"rename {path}")
        assert_readonly(lambda: os.chmod(path, 0o666), f"chmod {path}")
        assert_readonly(lambda: os.utime(path, (0, 0)), f"utimes {path}")
    assert_readonly(lambda: os.open(os.path.join(d, "new"), os.O_WRONLY | os.O_CREAT, 0o644), "create in a snapshot")
    assert_readonly(lambda: os.mkdir(os.path.join(d, "sub")), "mkdir in a snapshot")
    assert_readonly(lambda: os.rmdir(d), "rmdir a snapshot")
    assert_readonly(lambda: os.rename(d, d + "x"), "rename a snapshot")
    assert_readonly(lambda: os.unlink(fs.path(coll, "latest")), "unlink latest")
    assert_readonly(lambda: os.rename(fs.path(coll, "latest"), fs.path(coll, "latest2")), "rename latest")
    assert_readonly(lambda: os.rename(fs.path(coll, "incoming"), fs.path(coll, "in2")), "rename incoming/")
    # moving a file from incoming/ out of it is a write outside incoming/
    with open(fs.path(coll, "incoming", ".x"), "wb") as f:
        f.write(b"x")
    assert_readonly(lambda: os.rename(fs.path(coll, "incoming", ".x"), os.path.join(d, "x")),
                    "rename from incoming/ into a snapshot")
    os.unlink(fs.path(coll, "incoming", ".x"))
    # shell tools see the same
    p = run(["sh", "-c", 'echo x >> "$1"', "sh", db], check=False)
    assert p.returncode != 0 and re.search(r"Read-only file system|Permission denied", p.stderr), p.stderr
    verify_snapshot(d, coll)


def test_retention_keeps_the_newest(make_fs, tmp_path):
    """keep=2: after five snapshots that nobody holds any more, both the
    mount and the STORE show only the newest two."""
    fs = make_fs(opts=("batch_delay=50", "keep=2"))
    fs.mkcoll("c")
    made = []
    for i in range(5):
        apply(fs, "c", tmp_path, f"d{i}.db", rows=[(i, "x")])
        made.append(fs.latest_id("c"))
    assert fs.snapshot_ids("c") == made[-2:]
    assert fs.status("c")["snapshots"] == 2

    def store_keeps_two():
        names = sorted(os.listdir(fs.store_path("c", "snapshots")))
        if names != ["%08d" % s for s in made[-2:]]:
            raise AssertionError(f"the store holds snapshots {names}")
        return True
    wait_for(store_keeps_two, 30, "retired snapshots to be removed from the store")


def test_retention_spares_open_snapshots(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=50", "keep=2"))
    fs.mkcoll("c")
    apply(fs, "c", tmp_path, "a.db", rows=[(i, "a" * 300) for i in range(500)])
    a = fs.latest_id("c")
    apply(fs, "c", tmp_path, "b.db", rows=[(i, "b" * 300) for i in range(500, 1000)])
    b = fs.latest_id("c")
    man_a, man_b = fs.manifest("c", a), fs.manifest("c", b)

    fd = os.open(fs.snap_db("c", a), os.O_RDONLY)
    head = os.pread(fd, 4096, 0)  # opened and read a little, as a slow uploader would
    # a process whose cwd is snapshot b; it opens files there only later
    reader = subprocess.Popen(["sh", "-c", "read go; sha256sum c.sqlite3; cat MANIFEST.json"],
                              cwd=fs.snap_dir("c", b), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        for i in range(3):
            apply(fs, "c", tmp_path, f"n{i}.db", rows=[(2000 + i, "n")])
        newest = fs.snapshot_ids("c")
        assert a not in newest and b not in newest, f"retired snapshots still listed: {newest}"
        assert len(newest) == 2 and fs.status("c")["snapshots"] == 2

        sha, size = sha256_fd(fd)
        assert head == os.pread(fd, 4096, 0)
        assert (sha, size) == (man_a["sha256"], man_a["size"]), "open snapshot changed under its reader"

        out, err = reader.communicate("go\n", timeout=60)
        assert reader.returncode == 0, err
        line, rest = out.split("\n", 1)
        assert line.split()[0] == man_b["sha256"], "snapshot under a cwd changed or vanished"
        assert json.loads(rest)["sha256"] == man_b["sha256"]
    finally:
        os.close(fd)
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def _reader_loop(fs, coll, stop, tool, work, stats, errors):
    """Copies the snapshot latest points at until stop is set; every copy
    that the tool reported as successful must be whole and valid."""
    n = 0
    while not stop.is_set():
        n += 1
        sid = fs.latest_id(coll)
        if sid is None:
            continue
        dst = os.path.join(work, f"{tool}-{n}")
        os.mkdir(dst)
        src = fs.snap_dir(coll, sid)
        if tool == "cp":
            p = run(["cp", os.path.join(src, coll + ".sqlite3"), os.path.join(src, "MANIFEST.json"), dst],
                    check=False)
        else:
            p = run(["rsync", "-a", src + "/", dst + "/"], check=False)
        if p.returncode != 0:
            # retired between readlink and open: allowed, nothing was copied as if whole
            stats[tool + "_gone"] += 1
            shutil.rmtree(dst)
            continue
        try:
            verify_snapshot(dst, coll)
            stats[tool] += 1
        except AssertionError as e:
            errors.append(f"{tool} of snapshot {sid}: {e}")
        # straight through the symlink, the way a user would type it
        flat = os.path.join(dst, "via-latest.sqlite3")
        p = run(["cp", fs.path(coll, "latest", coll + ".sqlite3"), flat], check=False)
        if p.returncode == 0:
            ic = integrity(flat)
            if ic != "ok":
                errors.append(f"cp of latest/{coll}.sqlite3: integrity_check: {ic}")
        shutil.rmtree(dst)


def test_readers_copying_latest_during_merges_get_valid_files(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=20", "keep=3"))
    fs.mkcoll("c")
    src = tmp_path / "deltas"
    src.mkdir()
    work = tmp_path / "copies"
    work.mkdir()
    apply(fs, "c", tmp_path, "seed.db", rows=[(i, "s" * 200) for i in range(3000)])
    stop = threading.Event()
    stats = {"cp": 0, "rsync": 0, "cp_gone": 0, "rsync_gone": 0}
    errors = []
    readers = [threading.Thread(target=_reader_loop, args=(fs, "c", stop, t, str(work), stats, errors))
               for t in ("cp", "rsync")]
    for r in readers:
        r.start()
    shas = []
    try:
        inc = fs.path("c", "incoming")
        for i in range(40):
            p = str(src / f"d{i:02d}.db")
            shas.append(make_delta(p, rows=[(10_000 + i * 100 + k, f"{i}-{k}" * 20) for k in range(100)],
                                   deletes=[i]))
            run(["cp", p, inc + "/"])
            name = os.path.basename(p)
            wait_for(lambda: name not in os.listdir(inc), 30, f"{name} to be queued")
        fs.wait_applied("c", shas, timeout=120)
        wait_for(lambda: stats["cp"] >= 5 and stats["rsync"] >= 5, 60, "each reader to finish a few copies")
    finally:
        stop.set()
        for r in readers:
            r.join(120)
    assert not errors, "\n".join(errors[:10])
    assert fs.query("c", "SELECT count(*) FROM items") == [(3000 - 40 + 4000,)]
    for sid in fs.snapshot_ids("c"):
        verify_snapshot(fs.snap_dir("c", sid), "c")


@pytest.mark.parametrize("tool", ["cat", "dd"])
def test_snapshot_reads_whole_with_plain_tools(fs, coll, tmp_path, tool):
    apply(fs, coll, tmp_path, "a.db", rows=[(i, os.urandom(50).hex()) for i in range(5000)])
    sid = fs.latest_id(coll)
    db = fs.snap_db(coll, sid)
    out = str(tmp_path / "out")
    cmd = ["sh", "-c", 'cat "$1" > "$2"', "sh", db, out] if tool == "cat" else \
        ["dd", f"if={db}", f"of={out}", "bs=1000"]
    run(cmd)
    assert sha256_file(out) == fs.manifest(coll, sid)["sha256"]


def test_passthrough_serves_the_same_sealed_bytes(make_fs, tmp_path):
    """-o passthrough: the kernel reads sealed files from the store itself.
    Every byte must still match the manifest, sqlite3 -readonly must work,
    snapshot files must stay read-only, and an open snapshot must survive
    retention; where the kernel cannot do passthrough, snapfs says so and
    serves through the daemon, with the same results."""
    fs = make_fs(opts=("batch_delay=50", "keep=1", "passthrough"))
    os.mkdir(os.path.join(fs.mnt, "c"))
    apply(fs, "c", tmp_path, "a.db", rows=[(i, "a" * 500) for i in range(2000)])
    first = fs.latest_id("c")
    m = fs.manifest("c", first)
    db = fs.snap_db("c", first)
    assert sha256_file(db) == m["sha256"]
    assert run(["sha256sum", db]).stdout.split()[0] == m["sha256"]
    assert integrity(db) == "ok"
    assert fs.query("c", "SELECT count(*) FROM items", sid=first) == [(2000,)]
    assert_readonly(lambda: os.open(db, os.O_WRONLY), f"open {db} for writing")
    assert_readonly(lambda: os.truncate(db, 0), f"truncate {db}")
    with open(db, "rb") as held:
        apply(fs, "c", tmp_path, "b.db", rows=[(5000, "b")])
        assert fs.latest_id("c") > first
        assert sha256_fd(held.fileno()) == (m["sha256"], m["size"]), "open snapshot changed under passthrough"
    # Either the kernel took it, or snapfs said why it serves through the daemon.
    log = fs.log_text()
    assert "FUSE passthrough on" in log or "FUSE passthrough unavailable" in log or \
        "FUSE passthrough: registering" in log, log


def _reads(fs):
    return fs.status()["reads"]


def test_read_path_auto_streams_by_passthrough_and_queries_from_the_page_cache(make_fs, tmp_path):
    """Default read_path=auto: a plain open of a sealed file (cat, cp) is
    served by passthrough where the kernel does it, an open with O_NOFOLLOW
    (SQLite's, rsync's) from the page cache, and while a file is open one
    way every new open of it goes the same way (the kernel allows no mix).
    Status says which way serves each open file; the bytes are the same."""
    fs = make_fs(opts=("batch_delay=50",))
    os.mkdir(os.path.join(fs.mnt, "c"))
    apply(fs, "c", tmp_path, "a.db", rows=[(i, "a" * 500) for i in range(2000)])
    sid = fs.latest_id("c")
    m = fs.manifest("c", sid)
    db = fs.snap_db("c", sid)
    key = f"c/snapshots/{sid:08d}/c.sqlite3"
    reads = _reads(fs)
    assert reads["read_path"] == "auto" and reads["open"] == {}, reads
    if not reads["passthrough"]:
        if os.environ.get("SNAPFS_REQUIRE_FUSE") and os.geteuid() == 0:
            pytest.fail(f"the kernel refused FUSE passthrough as root: {fs.log_text()}")
        pytest.skip("this kernel does not do FUSE passthrough")
    plain = os.open(db, os.O_RDONLY)
    try:
        assert _reads(fs)["open"] == {key: {"passthrough": 1, "page_cache": 0}}
        assert sha256_fd(plain) == (m["sha256"], m["size"])
        # while it is open by passthrough, an O_NOFOLLOW open goes the same way
        nofollow = os.open(db, os.O_RDONLY | os.O_NOFOLLOW)
        assert _reads(fs)["open"] == {key: {"passthrough": 2, "page_cache": 0}}
        os.close(nofollow)
    finally:
        os.close(plain)
    wait_for(lambda: _reads(fs)["open"] == {}, 10, "the releases to reach snapfs")
    # SQLite's opens (O_NOFOLLOW) are served from the page cache
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT count(*) FROM items").fetchone() == (2000,)
        assert _reads(fs)["open"] == {key: {"passthrough": 0, "page_cache": 1}}
        # and a plain open while SQLite holds it follows it
        assert run(["sha256sum", db]).stdout.split()[0] == m["sha256"]
        with open(db, "rb") as held:
            assert _reads(fs)["open"] == {key: {"passthrough": 0, "page_cache": 2}}
            assert sha256_fd(held.fileno()) == (m["sha256"], m["size"])
    finally:
        con.close()
    assert run(["sha256sum", db]).stdout.split()[0] == m["sha256"]


@pytest.mark.parametrize("opt, way", [("read_path=cache", "page_cache"),
                                       ("read_path=passthrough", "passthrough")])
def test_read_path_fixed(make_fs, tmp_path, opt, way):
    """read_path=cache serves every open from the page cache; passthrough
    every open by passthrough (where the kernel does it), SQLite's too."""
    fs = make_fs(opts=("batch_delay=50", opt))
    os.mkdir(os.path.join(fs.mnt, "c"))
    apply(fs, "c", tmp_path, "a.db", rows=[(i, "b" * 100) for i in range(500)])
    sid = fs.latest_id("c")
    db = fs.snap_db("c", sid)
    reads = _reads(fs)
    assert reads["read_path"] == opt.split("=")[1], reads
    if way == "passthrough" and not reads["passthrough"]:
        pytest.skip("this kernel does not do FUSE passthrough")
    assert reads["passthrough"] == (way == "passthrough"), reads
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        with open(db, "rb") as held:
            counts = _reads(fs)["open"][f"c/snapshots/{sid:08d}/c.sqlite3"]
            assert counts[way] == 2 and sum(counts.values()) == 2, counts
            assert sha256_fd(held.fileno())[0] == fs.manifest("c", sid)["sha256"]
        assert con.execute("SELECT count(*) FROM items").fetchone() == (500,)
    finally:
        con.close()

