#!/usr/bin/env python3
"""Makes a collection database like a live snapfs one, for bench/bench.sh.

    make_collection.py PATH SIZE_MB

Table "vectors" (id INTEGER PRIMARY KEY, embedding BLOB of 1536 bytes,
document TEXT, metadata TEXT) filled until the file is about SIZE_MB MiB,
plus the ledger table, left in rollback-journal mode as livedb_close
leaves a live database. Deterministic: the same arguments give the same
bytes.
"""
import json
import os
import random
import sqlite3
import sys

ROW_BYTES = 2053  # measured: one row and its share of b-tree overhead


def main():
    path, size_mb = sys.argv[1], int(sys.argv[2])
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    rnd = random.Random(1)
    words = ("the quick brown fox jumps over a lazy dog while vectors hum "
             "in sqlite pages near every shard of the index").split()
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE vectors(id INTEGER PRIMARY KEY, embedding BLOB NOT NULL,"
               " document TEXT, metadata TEXT)")
    db.execute("CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL,"
               " name TEXT NOT NULL, applied_at INTEGER NOT NULL)")

    def vectors():
        for i in range(1, rows + 1):
            doc = " ".join(rnd.choice(words) for _ in range(50))
            meta = json.dumps({"source": "doc%d" % (i % 977), "page": i % 50, "lang": "en"})
            yield (i, rnd.randbytes(1536), doc, meta)

    db.execute("BEGIN")
    db.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?)", vectors())
    db.executemany("INSERT INTO _snapfs_ledger VALUES (?, ?, ?, ?)",
                   ((s, "%064x" % s, "delta-%04d.db" % s, 1790000000 + s) for s in range(1, 201)))
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    os.rename(tmp, path)
    print("%s: %d rows, %d bytes" % (path, rows, os.path.getsize(path)))


if __name__ == "__main__":
    main()
