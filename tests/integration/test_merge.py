"""Merge semantics: upsert by primary key in arrival order, deletions by
key, tables created from the delta, a ledger row per applied delta,
duplicates applied once, bursts batched into few snapshots."""

import os

from snapfs_test.harness import make_db, make_delta, run, wait_for


def submit_in_order(fs, coll, srcs):
    """cp each file and await its queueing before the next, so that the
    arrival order is the order given (RELEASE is asynchronous)."""
    inc = fs.path(coll, "incoming")
    for s in srcs:
        name = os.path.basename(s)
        run(["cp", s, os.path.join(inc, name)])
        wait_for(lambda: name not in os.listdir(inc), 30, f"{name} to be queued")


def test_upserts_apply_in_arrival_order(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=1000",))
    fs.mkcoll("c")
    srcs, shas = [], []
    for i in range(10):
        p = str(tmp_path / f"d{i:02d}.db")
        shas.append(make_delta(p, rows=[(1, f"v{i}"), (100 + i, "x")]))
        srcs.append(p)
    submit_in_order(fs, "c", srcs)
    fs.wait_applied("c", shas)
    assert fs.query("c", "SELECT body FROM items WHERE id = 1") == [("v9",)]
    assert fs.query("c", "SELECT count(*) FROM items") == [(11,)]
    names = [n for (n,) in fs.query("c", "SELECT name FROM _snapfs_ledger ORDER BY seq")]
    assert names == [os.path.basename(s) for s in srcs]


def test_deletions_apply_before_upserts(fs, tmp_path):
    fs.mkcoll("c")
    d1, d2 = str(tmp_path / "d1.db"), str(tmp_path / "d2.db")
    s1 = make_delta(d1, rows=[(i, f"r{i}") for i in range(1, 6)])
    s2 = make_delta(d2, rows=[(3, "new3")], deletes=[2, 3, 99])
    submit_in_order(fs, "c", [d1, d2])
    fs.wait_applied("c", [s1, s2])
    assert fs.query("c", "SELECT id, body FROM items ORDER BY id") == [
        (1, "r1"), (3, "new3"), (4, "r4"), (5, "r5")]
    # the delete table itself does not become part of the collection
    tables = {t for (t,) in fs.query("c", "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "_snapfs_delete_items" not in tables


def test_tables_created_from_delta_with_types_and_composite_keys(fs, tmp_path):
    fs.mkcoll("c")
    d1 = str(tmp_path / "d1.db")
    s1 = make_db(d1,
                 "CREATE TABLE words(w TEXT PRIMARY KEY, n INTEGER, emb BLOB)",
                 "INSERT INTO words VALUES('a', 1, x'0102'), ('b', 2, NULL)",
                 "CREATE TABLE pairs(a INTEGER, b TEXT, v REAL, PRIMARY KEY(a, b))",
                 "INSERT INTO pairs VALUES(1, 'x', 0.5), (1, 'y', 1.5), (2, 'x', 2.5)")
    d2 = str(tmp_path / "d2.db")
    s2 = make_db(d2,
                 "CREATE TABLE pairs(a INTEGER, b TEXT, v REAL, PRIMARY KEY(a, b))",
                 "INSERT INTO pairs VALUES(2, 'x', 9.0)",
                 "CREATE TABLE _snapfs_delete_pairs(a INTEGER, b TEXT, PRIMARY KEY(a, b))",
                 "INSERT INTO _snapfs_delete_pairs VALUES(1, 'y')")
    submit_in_order(fs, "c", [d1, d2])
    fs.wait_applied("c", [s1, s2])
    info = fs.query("c", "SELECT name, type, pk FROM pragma_table_info('words')")
    assert info == [("w", "TEXT", 1), ("n", "INTEGER", 0), ("emb", "BLOB", 0)]
    info = fs.query("c", "SELECT name, type, pk FROM pragma_table_info('pairs')")
    assert info == [("a", "INTEGER", 1), ("b", "TEXT", 2), ("v", "REAL", 0)]
    assert fs.query("c", "SELECT * FROM words ORDER BY w") == [("a", 1, b"\x01\x02"), ("b", 2, None)]
    assert fs.query("c", "SELECT * FROM pairs ORDER BY a, b") == [(1, "x", 0.5), (2, "x", 9.0)]


def test_awkward_table_names_are_quoted(fs, tmp_path):
    fs.mkcoll("c")
    base = str(tmp_path / "base.db")
    s0 = make_delta(base, rows=[(1, "keep me")])
    odd = str(tmp_path / "odd.db")
    s1 = make_db(odd,
                 'CREATE TABLE "x""; DROP TABLE items; --"("k"" y" TEXT PRIMARY KEY, "select" INTEGER)',
                 'INSERT INTO "x""; DROP TABLE items; --" VALUES(\'k1\', 7)')
    submit_in_order(fs, "c", [base, odd])
    fs.wait_applied("c", [s0, s1])
    assert fs.query("c", "SELECT body FROM items") == [("keep me",)]
    assert fs.query("c", 'SELECT * FROM "x""; DROP TABLE items; --"') == [("k1", 7)]


def test_ledger_schema_and_rows(fs, tmp_path):
    fs.mkcoll("c")
    d = str(tmp_path / "d.db")
    sha = make_delta(d, rows=[(1, "a")])
    fs.submit("c", d, name="first.db")
    fs.wait_applied("c", [sha])
    cols = fs.query("c", "SELECT name, type, pk, \"notnull\" FROM pragma_table_info('_snapfs_ledger')")
    assert [(n, t.upper(), pk) for n, t, pk, _ in cols] == [
        ("seq", "INTEGER", 1), ("sha256", "TEXT", 0), ("name", "TEXT", 0), ("applied_at", "INTEGER", 0)]
    rows = fs.query("c", "SELECT seq, sha256, name, applied_at FROM _snapfs_ledger")
    assert len(rows) == 1
    seq, s, name, at = rows[0]
    assert s.lower() == sha and name == "first.db" and isinstance(seq, int) and at > 1_600_000_000


def test_duplicate_delta_applied_once(fs, tmp_path):
    fs.mkcoll("c")
    d1, d2 = str(tmp_path / "d1.db"), str(tmp_path / "d2.db")
    s1 = make_delta(d1, rows=[(1, "a")])
    s2 = make_delta(d2, deletes=[1])
    submit_in_order(fs, "c", [d1, d2])
    fs.wait_applied("c", [s1, s2])
    assert fs.query("c", "SELECT count(*) FROM items") == [(0,)]
    # the same bytes again, under a new name and under the old one:
    # applying either would bring row 1 back
    submit_in_order(fs, "c", [d1])
    fs.submit("c", d1, name="d1-again.db")
    wait_for(lambda: fs.status("c")["duplicate_total"] == 2 and fs.status("c")["queued"] == 0, 30,
             "both copies to be counted as duplicates")
    st = fs.wait_idle("c")
    assert st["applied_total"] == 2 and st["rejected_total"] == 0, st
    assert fs.query("c", "SELECT count(*) FROM items") == [(0,)]
    assert fs.query("c", "SELECT count(*) FROM _snapfs_ledger") == [(2,)]
    assert fs.metric("snapfs_deltas_duplicate_total", "c") == 2
    assert os.listdir(fs.path("c", "incoming")) == []


def test_duplicates_within_one_batch(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=2000",))
    fs.mkcoll("c")
    d = str(tmp_path / "d.db")
    sha = make_delta(d, rows=[(1, "a")])
    src = tmp_path / "src"
    src.mkdir()
    for n in ("x1.db", "x2.db", "x3.db"):
        run(["cp", d, str(src / n)])
    run(["sh", "-c", 'cp "$1"/* "$2"/', "sh", str(src), fs.path("c", "incoming")])
    fs.wait_applied("c", [sha])
    wait_for(lambda: fs.status("c")["duplicate_total"] == 2, 30, "two duplicates counted")
    assert fs.query("c", "SELECT count(*) FROM _snapfs_ledger") == [(1,)]
    assert fs.status("c")["applied_total"] == 1


def test_burst_of_200_is_batched(make_fs, tmp_path):
    fs = make_fs(opts=("keep=1000",))  # default batch_delay and batch_max
    fs.mkcoll("c")
    src = tmp_path / "burst"
    src.mkdir()
    shas = []
    for i in range(200):
        shas.append(make_delta(str(src / f"d{i:03d}.db"), rows=[(i * 5 + k, f"d{i}-{k}") for k in range(5)]))
    run(["sh", "-c", 'cp "$1"/* "$2"/', "sh", str(src), fs.path("c", "incoming")], timeout=300)
    fs.wait_applied("c", shas, timeout=180)
    st = fs.wait_idle("c")
    assert fs.query("c", "SELECT count(*) FROM items") == [(1000,)]
    assert fs.query("c", "SELECT count(*), count(DISTINCT sha256) FROM _snapfs_ledger") == [(200, 200)]
    ids = fs.snapshot_ids("c")
    assert 1 <= len(ids) <= 20, f"200 deltas made {len(ids)} snapshots"
    assert st["applied_total"] == 200 and st["snapshots"] == len(ids), st
    assert fs.metric("snapfs_snapshots_published_total", "c") == len(ids)
    # each delta is listed in exactly one manifest, in ledger order
    listed = []
    for sid in ids:
        listed += fs.manifest("c", sid)["deltas"]
    assert sorted(d["sha256"].lower() for d in listed) == sorted(shas)
    assert [d["seq"] for d in listed] == sorted(d["seq"] for d in listed)


def test_batch_max_bounds_a_batch(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=3000", "batch_max=5", "keep=1000"))
    fs.mkcoll("c")
    src = tmp_path / "burst"
    src.mkdir()
    shas = [make_delta(str(src / f"d{i:02d}.db"), rows=[(i, "x")]) for i in range(20)]
    run(["sh", "-c", 'cp "$1"/* "$2"/', "sh", str(src), fs.path("c", "incoming")])
    fs.wait_applied("c", shas, timeout=120)
    for sid in fs.snapshot_ids("c"):
        assert len(fs.manifest("c", sid)["deltas"]) <= 5
    assert len(fs.snapshot_ids("c")) >= 4


def test_snapshot_ids_monotonic_and_latest_newest(fs, tmp_path):
    fs.mkcoll("c")
    seen = []
    for i in range(4):
        d = str(tmp_path / f"d{i}.db")
        sha = make_delta(d, rows=[(i, "x")])
        fs.submit("c", d)
        fs.wait_applied("c", [sha])
        seen.append(fs.latest_id("c"))
    assert seen == sorted(set(seen)), seen
    assert os.readlink(fs.path("c", "latest")) == "snapshots/%08d" % seen[-1]
    assert all(len(n) == 8 and n.isdigit() for n in os.listdir(fs.path("c", "snapshots")))
    fs.unmount()
    fs.start()
    d = str(tmp_path / "after.db")
    sha = make_delta(d, rows=[(99, "x")])
    fs.submit("c", d)
    fs.wait_applied("c", [sha])
    assert fs.latest_id("c") > seen[-1], "snapshot id reused after restart"


def test_collections_are_independent(fs, tmp_path):
    fs.mkcoll("lines")
    fs.mkcoll("words")
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sa = make_delta(a, rows=[(1, "line")])
    sb = make_db(b, "CREATE TABLE words(w TEXT PRIMARY KEY)", "INSERT INTO words VALUES('word')")
    fs.submit("lines", a)
    fs.submit("words", b)
    fs.wait_applied("lines", [sa])
    fs.wait_applied("words", [sb])
    assert fs.query("lines", "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") == [
        ("_snapfs_ledger",), ("items",)]
    assert fs.query("words", "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") == [
        ("_snapfs_ledger",), ("words",)]
    assert os.listdir(fs.path("words", "latest")) and "words.sqlite3" in os.listdir(fs.path("words", "latest"))
    # the same delta may go to two collections: each ledger has it once
    fs.submit("words", a)
    fs.wait_applied("words", [sa])
    assert fs.status("lines")["duplicate_total"] == 0 and fs.status("words")["duplicate_total"] == 0
