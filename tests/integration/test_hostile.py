"""Untrusted deltas: each hostile class lands in rejected/ with a one-line
reason naming the problem, the live data is untouched (nothing of the
delta is applied) and the next good delta still applies."""

import os
import re
import sqlite3
import struct

import pytest

from snapfs_test.harness import make_db, make_delta, run, sha256_file, wait_for

EVIL = "INSERT INTO items VALUES(666, 'evil')"


def text_file(p):
    with open(p, "w") as f:
        f.write("this is not a database\n" * 50)


def truncated(p):
    make_delta(p, rows=[(1000 + i, "t" * 200) for i in range(1000)])
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size // 2)


def _varint(buf, i):
    v = 0
    for k in range(9):
        b = buf[i + k]
        if k == 8:
            return (v << 8) | b, i + 9
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, i + k + 1
    raise AssertionError("bad varint")


def corrupt_page(p):
    """A database that opens and has a readable schema but fails
    PRAGMA integrity_check: two rowids swapped on a leaf page."""
    make_delta(p, rows=[(i, "x" * 100) for i in range(1, 2001)])
    data = bytearray(open(p, "rb").read())
    ps = struct.unpack(">H", data[16:18])[0]
    for pg in range(2, len(data) // ps + 1):
        off = (pg - 1) * ps
        if data[off] != 0x0D or struct.unpack(">H", data[off + 3:off + 5])[0] < 2:
            continue
        spans = []
        for k in range(2):
            cell = off + struct.unpack(">H", data[off + 8 + 2 * k:off + 10 + 2 * k])[0]
            _, j = _varint(data, cell)
            _, e = _varint(data, j)
            spans.append((j, e))
        (j0, e0), (j1, e1) = spans
        if e0 - j0 == e1 - j1:
            a, b = bytes(data[j0:e0]), bytes(data[j1:e1])
            data[j0:e0], data[j1:e1] = b, a
            break
    with open(p, "wb") as f:
        f.write(data)
    c = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        assert c.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)
        assert c.execute("PRAGMA integrity_check").fetchone()[0] != "ok", "corruption not detected locally"
    finally:
        c.close()


def with_items(*sql):
    def build(p):
        make_delta(p, rows=[(666, "evil")], extra_sql=sql)
    return build


def conflicting(*sql):
    def build(p):
        make_db(p, *sql, "CREATE TABLE words(w TEXT PRIMARY KEY)", "INSERT INTO words VALUES('evil')")
    return build


HOSTILE = {
    "text": (text_file, r"sqlite|database"),
    "truncated": (truncated, r"truncat|torn|short|malformed|corrupt|integrity|size"),
    "corrupt_page": (corrupt_page, r"integrity|malformed|corrupt|out of order"),
    "trigger": (with_items("CREATE TRIGGER tr AFTER INSERT ON items BEGIN SELECT 1; END"), r"trigger"),
    "view": (with_items("CREATE VIEW v AS SELECT * FROM items"), r"view"),
    "fts5": (with_items("CREATE VIRTUAL TABLE docs USING fts5(body)",
                        "INSERT INTO docs VALUES('hello')"), r"virtual|fts5"),
    "generated_virtual": (with_items(
        "CREATE TABLE g(id INTEGER PRIMARY KEY, b TEXT, n INTEGER GENERATED ALWAYS AS (length(b)) VIRTUAL)",
        "INSERT INTO g(id, b) VALUES(1, 'xyz')"), r"generated"),
    "generated_stored": (with_items(
        "CREATE TABLE g(id INTEGER PRIMARY KEY, b TEXT, n INTEGER GENERATED ALWAYS AS (length(b)) STORED)",
        "INSERT INTO g(id, b) VALUES(1, 'xyz')"), r"generated"),
    "no_primary_key": (with_items("CREATE TABLE nopk(a TEXT, b TEXT)", "INSERT INTO nopk VALUES('x', 'y')"),
                       r"primary key|\bpk\b"),
    "conflicting_columns": (conflicting("CREATE TABLE items(id INTEGER PRIMARY KEY, text TEXT)",
                                        "INSERT INTO items VALUES(666, 'evil')"), r"column"),
    "extra_column": (conflicting("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT, more TEXT)",
                                 "INSERT INTO items VALUES(666, 'evil', 'x')"), r"column"),
    "conflicting_primary_key": (conflicting("CREATE TABLE items(id INTEGER, body TEXT PRIMARY KEY)",
                                            "INSERT INTO items VALUES(666, 'evil')"), r"primary key|\bpk\b"),
}

BASE_ROWS = [(1, "one"), (2, "two"), (3, "three")]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_delta_rejected(fs, tmp_path, kind):
    build, reason_re = HOSTILE[kind]
    fs.mkcoll("c")
    base = str(tmp_path / "base.db")
    s0 = make_delta(base, rows=BASE_ROWS)
    fs.submit("c", base)
    fs.wait_applied("c", [s0])
    before_id = fs.latest_id("c")
    before_sha = fs.manifest("c", before_id)["sha256"]

    bad = str(tmp_path / "bad.db")
    build(bad)
    bad_sha = sha256_file(bad)
    fs.submit("c", bad)
    reason = fs.wait_rejected("c", "bad.db")

    assert reason.endswith("\n") and reason.count("\n") == 1 and reason.strip(), repr(reason)
    assert re.search(reason_re, reason, re.I), f"{kind}: reason does not name the problem: {reason!r}"
    assert sha256_file(fs.path("c", "rejected", "bad.db")) == bad_sha, "rejected/ holds other bytes"

    st = fs.wait_idle("c")
    assert st["rejected_total"] == 1 and st["rejected"] == 1 and st["applied_total"] == 1, st
    assert fs.metric("snapfs_deltas_rejected_total", "c") == 1
    # live data untouched: either no new snapshot, or one with the same content
    assert fs.query("c", "SELECT id, body FROM items ORDER BY id") == BASE_ROWS
    assert bad_sha not in fs.ledger("c")
    if fs.latest_id("c") == before_id:
        assert fs.manifest("c", before_id)["sha256"] == before_sha

    good = str(tmp_path / "next.db")
    s1 = make_delta(good, rows=[(4, "four")])
    fs.submit("c", good)
    fs.wait_applied("c", [s1])
    assert fs.query("c", "SELECT id, body FROM items ORDER BY id") == BASE_ROWS + [(4, "four")]
    tables = {t for (t,) in fs.query("c", "SELECT name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger')")}
    assert tables == {"items", "_snapfs_ledger"}, f"{kind}: part of the rejected delta was applied: {tables}"
    assert fs.status("c")["rejected_total"] == 1


def test_bad_delta_does_not_fail_its_batch(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=1000",))
    fs.mkcoll("c")
    src = tmp_path / "src"
    src.mkdir()
    s1 = make_delta(str(src / "a.db"), rows=[(1, "a")])
    text_file(str(src / "b.db"))
    s3 = make_delta(str(src / "c.db"), rows=[(3, "c")])
    run(["sh", "-c", 'cp "$1"/* "$2"/', "sh", str(src), fs.path("c", "incoming")])
    fs.wait_applied("c", [s1, s3])
    fs.wait_rejected("c", "b.db")
    assert fs.query("c", "SELECT id, body FROM items ORDER BY id") == [(1, "a"), (3, "c")]


def test_same_name_rejected_twice_keeps_both(fs, tmp_path):
    fs.mkcoll("c")
    bad = str(tmp_path / "bad.db")
    text_file(bad)
    fs.submit("c", bad)
    fs.wait_rejected("c", "bad.db")
    with open(bad, "a") as f:
        f.write("again\n")
    fs.submit("c", bad)

    def both_with_reasons():
        names = os.listdir(fs.path("c", "rejected"))
        deltas = [n for n in names if not n.endswith(".reason")]
        reasons = [n for n in names if n.endswith(".reason")]
        if len(deltas) != 2 or sorted(reasons) != sorted(d + ".reason" for d in deltas):
            raise AssertionError(f"rejected/ holds {sorted(names)}")
        return True
    wait_for(both_with_reasons, 30, "two rejected deltas, each with its reason")
    fs.wait_idle("c")
    assert fs.status("c")["rejected"] == 2
