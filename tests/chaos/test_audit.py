"""The chaos run's audit catches what it claims to catch.

No FUSE and no daemon: a STORE is built here by a reference merge of the
same deltas the chaos writers make (upsert by primary key, deletions
first, one ledger row per delta, a snapshot per batch), then damaged in
one way per test — a delta applied again after later ones, one missing,
a corrupt one applied, rows with wrong values, leftovers, a bad snapshot
— and the audit of chaos.py must count exactly that class of failure. A
clean STORE must pass with every counter at 0.
"""

import json
import os
import shutil
import sqlite3

import pytest

import chaos  # noqa: E402

COLL = "lines"
LEDGER = ("CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, "
          "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")


def ref_apply(db, deltas, ledger=True):
    """Merges deltas, in order, into db as snapfs's contract says; returns
    the ledger rows added as (seq, name, sha256)."""
    c = sqlite3.connect(db)
    added = []
    try:
        have = {n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for s in chaos.SCHEMA + (LEDGER,):
            name = s.split()[2].split("(")[0]
            if name not in have:
                c.execute(s)
        for d in deltas:
            c.execute("ATTACH DATABASE ? AS d", (d.path,))
            c.execute("DELETE FROM items WHERE id IN (SELECT id FROM d._snapfs_delete_items)")
            c.execute("DELETE FROM marks WHERE id IN (SELECT id FROM d._snapfs_delete_marks)")
            for t in ("items", "reg", "marks", "wstate"):
                c.execute(f"INSERT OR REPLACE INTO {t} SELECT * FROM d.{t}")
            if ledger:
                cur = c.execute("INSERT INTO _snapfs_ledger(sha256, name, applied_at) VALUES(?, ?, 0)",
                                (d.sha, d.name))
                added.append((cur.lastrowid, d.name, d.sha))
            c.commit()
            c.execute("DETACH DATABASE d")
    finally:
        c.close()
    return added


class Store:
    """A STORE made by the reference merge: one snapshot per batch."""

    def __init__(self, ch):
        self.ch = ch
        self.cdir = ch.fs.store_path(COLL)
        for sub in ("incoming", "queue", "staging", "snapshots", "rejected"):
            os.makedirs(os.path.join(self.cdir, sub), exist_ok=True)
        self.live = os.path.join(self.cdir, "live.db")
        self.next_id = 1

    def batch(self, deltas, ledger=True):
        added = ref_apply(self.live, deltas, ledger)
        return self.seal(added)

    def seal(self, added):
        sid = self.next_id
        self.next_id += 1
        d = os.path.join(self.cdir, "snapshots", "%08d" % sid)
        os.makedirs(d)
        db = os.path.join(d, COLL + ".sqlite3")
        shutil.copyfile(self.live, db)
        c = sqlite3.connect(db)
        ledger_max = c.execute("SELECT coalesce(max(seq), 0) FROM _snapfs_ledger").fetchone()[0]
        items = c.execute("SELECT count(*) FROM items").fetchone()[0]
        c.close()
        m = {"format": 1, "collection": COLL, "id": sid, "snapshot": "%08d" % sid,
             "file": COLL + ".sqlite3", "size": os.path.getsize(db), "sha256": chaos.sha256_file(db),
             "integrity_check": "ok", "ledger_max": ledger_max, "tables": {"items": items},
             "deltas": [{"seq": s, "name": n, "sha256": h} for s, n, h in added]}
        with open(os.path.join(d, "MANIFEST.json"), "w") as f:
            json.dump(m, f)
        latest = os.path.join(self.cdir, "latest")
        if os.path.lexists(latest):
            os.unlink(latest)
        os.symlink("snapshots/%08d" % sid, latest)
        return sid

    def reject(self, x):
        shutil.copyfile(x.path, os.path.join(self.cdir, "rejected", x.name))
        with open(os.path.join(self.cdir, "rejected", x.name + ".reason"), "w") as f:
            f.write("bad\n")

    def sql(self, *stmts):
        """Runs stmts on the live database and seals the result."""
        c = sqlite3.connect(self.live)
        for s in stmts:
            c.execute(*s) if isinstance(s, tuple) else c.execute(s)
        c.commit()
        c.close()
        return self.seal([])


@pytest.fixture
def world(tmp_path):
    args = chaos.parse_args(["--collections", "1", "--workdir", str(tmp_path)])
    args.seed = 7
    ch = chaos.Chaos(args)
    w = chaos.Writer(ch, 0, "cp")
    good = [w.next_good() for _ in range(14)]
    for d in good:
        ch.st.ack(d, "cp")
    b = chaos.Writer(ch, 0, "corrupt", corrupt=True)
    bad = [b.next_corrupt() for _ in range(4)]
    for x in bad:
        ch.st.ack(x, "cp")
    st = Store(ch)
    for x in bad:
        st.reject(x)
    return ch, st, good, bad


def failures(ch):
    return {k: v for k, v in ch.st.c.items() if k in chaos.FAIL_KEYS and v}


def test_clean_store_passes(world):
    ch, st, good, bad = world
    st.batch(good[:5])
    st.batch(good[5:])
    ch.audit_final()
    assert failures(ch) == {}
    assert ch.final["applied"] == len(good)


def test_delta_applied_again_after_later_ones(world):
    """The same delta merged a second time (no second ledger row: the
    ledger alone cannot show it) after the deltas that deleted its rows
    and its marker and overwrote its registers."""
    ch, st, good, bad = world
    st.batch(good[:-1])
    ref_apply(st.live, [good[2]], ledger=False)
    st.batch(good[-1:])
    ch.audit_final()
    f = failures(ch)
    assert f.get("twice", 0) >= 1 and set(f) == {"twice"}, f


def test_ledger_row_twice(world):
    ch, st, good, bad = world
    st.batch(good)
    # the UNIQUE on sha256 would refuse a second row: a broken ledger
    # without it
    st.sql("CREATE TABLE l2 AS SELECT * FROM _snapfs_ledger", "DROP TABLE _snapfs_ledger",
           "CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT, name TEXT, "
           "applied_at INTEGER)",
           "INSERT INTO _snapfs_ledger SELECT * FROM l2", "DROP TABLE l2",
           ("INSERT INTO _snapfs_ledger(sha256, name, applied_at) VALUES(?, ?, 0)",
            (good[3].sha, good[3].name)))
    ch.audit_final()
    assert failures(ch).get("twice", 0) >= 1, failures(ch)


def test_manifests_list_one_delta_with_two_seqs(world):
    ch, st, good, bad = world
    st.batch(good[:4])
    sid = st.batch(good[4:])
    mp = os.path.join(st.cdir, "snapshots", "%08d" % sid, "MANIFEST.json")
    with open(mp) as f:
        m = json.load(f)
    m["deltas"].append({"seq": 99, "name": good[0].name, "sha256": good[0].sha})
    with open(mp, "w") as f:
        json.dump(m, f)
    ch.audit_final()
    assert failures(ch).get("twice", 0) == 1, failures(ch)


def test_acknowledged_delta_missing(world):
    ch, st, good, bad = world
    st.batch(good[:6] + good[7:])
    ch.audit_final()
    assert failures(ch) == {"lost": 1}


def test_acknowledged_corrupt_delta_not_rejected(world):
    ch, st, good, bad = world
    st.batch(good)
    os.unlink(os.path.join(st.cdir, "rejected", bad[1].name))
    os.unlink(os.path.join(st.cdir, "rejected", bad[1].name + ".reason"))
    ch.audit_final()
    assert failures(ch) == {"lost": 1}


def test_corrupt_delta_in_the_ledger(world):
    ch, st, good, bad = world
    st.batch(good)
    st.sql(("INSERT INTO _snapfs_ledger(sha256, name, applied_at) VALUES(?, ?, 0)",
            (bad[0].sha, bad[0].name)))
    ch.audit_final()
    assert failures(ch).get("corrupt_applied", 0) >= 1, failures(ch)


def test_unknown_content_in_the_ledger(world):
    """A torn partial of a delta applied: a sha256 no writer completed."""
    ch, st, good, bad = world
    st.batch(good)
    st.sql(("INSERT INTO _snapfs_ledger(sha256, name, applied_at) VALUES(?, ?, 0)",
            ("ab" * 32, good[1].name)))
    ch.audit_final()
    assert failures(ch) == {"corrupt_applied": 1}


def test_rows_of_a_corrupt_delta_or_its_tables(world):
    ch, st, good, bad = world
    st.batch(good)
    x = next(x for x in bad if x.n)
    st.sql(("INSERT INTO items VALUES(?, ?, 0, 'x')", (x.lo, x.name)), "CREATE TABLE nopk(a, b)")
    ch.audit_final()
    assert failures(ch).get("corrupt_applied", 0) == 2, failures(ch)


def test_wrong_values_and_ghost_rows(world):
    ch, st, good, bad = world
    st.batch(good[:-1])
    last = good[-1]  # never applied, no ledger row: its rows are ghosts
    live = good[-2]
    st.sql(("UPDATE items SET body = 'changed' WHERE id = ?", (live.lo,)),
           ("INSERT INTO items VALUES(?, ?, 0, 'ghost')", (last.lo, last.name)))
    ch.audit_final()
    f = failures(ch)
    assert f.get("wrong", 0) >= 2 and f.get("lost") == 1, f


def test_leftovers(world):
    ch, st, good, bad = world
    st.batch(good)
    os.mkdir(os.path.join(st.cdir, "staging", "00000009"))
    open(os.path.join(st.cdir, "queue", "0000000000000001-x.db"), "w").close()
    open(os.path.join(st.cdir, "latest.tmp"), "w").close()
    open(os.path.join(st.cdir, "incoming", "never-queued.db"), "w").close()
    os.unlink(os.path.join(st.cdir, "rejected", bad[2].name + ".reason"))
    open(os.path.join(st.cdir, "rejected", bad[2].name + ".reason.tmp"), "w").close()
    ch.audit_final()
    assert failures(ch) == {"leftover": 6}, failures(ch)


def test_bad_snapshot(world):
    ch, st, good, bad = world
    sid = st.batch(good[:5])
    st.batch(good[5:])
    db = os.path.join(st.cdir, "snapshots", "%08d" % sid, COLL + ".sqlite3")
    with open(db, "r+b") as f:
        f.seek(200)
        f.write(b"\xff")
    ch.audit_final()
    assert failures(ch) == {"bad_snapshots": 1}


def test_snapshot_id_reused_or_going_back(world):
    ch, st, good, bad = world
    st.batch(good[:5])
    ch.st.see_id(COLL, 2, "0" * 64, "a reader, earlier")  # id 2 was another file before
    st.batch(good[5:])
    ch.audit_final()
    assert failures(ch) == {"id_errors": 1}


def test_ledger_max_must_grow_with_the_id(world):
    ch, st, good, bad = world
    st.batch(good)
    st.sql("DELETE FROM _snapfs_ledger WHERE seq = (SELECT max(seq) FROM _snapfs_ledger)")
    ch.audit_final()
    f = failures(ch)
    assert f.get("id_errors") == 1, f


def test_reader_sees_a_torn_copy(world, tmp_path):
    ch, st, good, bad = world
    sid = st.batch(good)
    d = os.path.join(st.cdir, "snapshots", "%08d" % sid)
    r = chaos.Reader(ch, 0)
    assert r.check_copy(COLL, sid, d, "cp-id") is None
    assert r.check_sqlite3(COLL, sid, d) is None
    db = os.path.join(d, COLL + ".sqlite3")
    with open(db, "r+b") as f:
        f.seek(os.path.getsize(db) - 100)
        f.write(b"torn")
    assert "sha256" in r.check_copy(COLL, sid, d, "cp-id")
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) - 4096)
    assert r.check_sqlite3(COLL, sid, d) is not None
