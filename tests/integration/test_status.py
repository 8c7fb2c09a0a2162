"""MOUNT/.snapfs/status, MOUNT/.snapfs/metrics and MOUNT/NAME/status say
what the daemon is doing, in the documented shapes."""

import json
import os
import re
import shutil
import subprocess

from snapfs_test.harness import make_delta, wait_for

COLL_KEYS = {"collection", "state", "queued", "applied_total", "duplicate_total", "rejected_total",
             "rejected", "snapshots", "last_snapshot", "last_batch", "last_error"}
METRICS = ("snapfs_deltas_applied_total", "snapfs_deltas_rejected_total", "snapfs_deltas_duplicate_total",
           "snapfs_snapshots_published_total", "snapfs_queue_deltas", "snapfs_seal_failures_total")


def test_global_status(fs):
    st = fs.status()
    assert {"version", "uptime_s", "store", "collections"} <= set(st), st
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", st["version"]), st
    assert os.path.realpath(st["store"]) == os.path.realpath(fs.store)
    assert isinstance(st["uptime_s"], (int, float)) and st["uptime_s"] >= 0
    assert st["collections"] == {}
    fs.mkcoll("a")
    fs.mkcoll("b")
    st = fs.status()
    assert set(st["collections"]) == {"a", "b"}
    for name, cs in st["collections"].items():
        assert COLL_KEYS <= set(cs) and cs["collection"] == name, cs
    # the size a stat reports lets cat and friends read the whole document
    with open(fs.path(".snapfs", "status"), "rb") as f:
        raw = f.read()
    json.loads(raw)
    assert sorted(os.listdir(fs.path(".snapfs"))) == ["metrics", "status"]


def test_collection_status_and_metrics_count(fs, tmp_path):
    fs.mkcoll("c")
    good = str(tmp_path / "good.db")
    sha = make_delta(good, rows=[(1, "a")])
    fs.submit("c", good)
    fs.wait_applied("c", [sha])
    fs.submit("c", good, name="again.db")
    bad = str(tmp_path / "bad.db")
    with open(bad, "w") as f:
        f.write("nope\n")
    fs.submit("c", bad)
    fs.wait_rejected("c", "bad.db")
    st = wait_for(lambda: (lambda s: s if s["duplicate_total"] == 1 and s["state"] == "idle"
                           and s["queued"] == 0 else False)(fs.status("c")), 30, "the duplicate to be counted")
    assert COLL_KEYS <= set(st), st
    assert st["applied_total"] == 1 and st["rejected_total"] == 1 and st["rejected"] == 1, st
    assert st["snapshots"] == len(fs.snapshot_ids("c")) >= 1
    assert st["last_snapshot"]["id"] == fs.latest_id("c")
    # where the batch that made it spent its time: one delta of the good file's size
    lb = st["last_batch"]
    assert lb["deltas"] == 1 and lb["bytes"] == os.path.getsize(good), lb
    parts = [lb[k] for k in ("hash_ms", "check_ms", "apply_ms", "seal_ms")]
    assert all(p >= 0 for p in parts) and lb["seal_ms"] > 0, lb
    assert lb["ms"] >= sum(parts) - 1, lb
    assert fs.status()["collections"]["c"]["applied_total"] == 1

    text = fs.metrics()
    for m in METRICS:
        assert re.search(rf'^{m}{{collection="c"}} \d+(\.\d+)?$', text, re.M), f"{m} missing:\n{text}"
    assert fs.metric("snapfs_deltas_applied_total", "c") == 1
    assert fs.metric("snapfs_deltas_rejected_total", "c") == 1
    assert fs.metric("snapfs_deltas_duplicate_total", "c") == 1
    assert fs.metric("snapfs_queue_deltas", "c") == 0
    assert fs.metric("snapfs_seal_failures_total", "c") == 0
    assert fs.metric("snapfs_snapshots_published_total", "c") >= 1
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [-+0-9.eE]+', line), line


def test_queued_shows_waiting_deltas(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=3000",))
    fs.mkcoll("c")
    shas = []
    for i in range(3):
        p = str(tmp_path / f"d{i}.db")
        shas.append(make_delta(p, rows=[(i, "x")]))
        fs.submit("c", p)
    wait_for(lambda: fs.status("c")["queued"] == 3, 10, "three deltas queued")
    assert fs.metric("snapfs_queue_deltas", "c") == 3
    assert os.listdir(fs.path("c", "incoming")) == []
    fs.wait_applied("c", shas)
    assert fs.wait_idle("c")["queued"] == 0


def test_hash_taken_while_written(fs, tmp_path):
    """A delta written from start to end in one pass (cp, rsync) is hashed
    as it arrives, and the merge uses that hash (last_batch says how many
    did); one written any other way is hashed when merged. Either way the
    ledger holds the file's own SHA-256 (wait_applied looks for it)."""
    fs.mkcoll("c")

    def batch_after(sha):
        fs.wait_applied("c", [sha])
        return wait_for(lambda: (lambda s: s["last_batch"] if s["state"] == "idle" and s["queued"] == 0
                                 and s["last_batch"] else False)(fs.status("c")), 30, "the batch to end")

    src = str(tmp_path / "cp.db")
    sha = make_delta(src, rows=[(i, "x" * 500) for i in range(2000)])
    fs.submit("c", src)
    lb = batch_after(sha)
    assert lb["deltas"] == 1 and lb["hashed_while_written"] == 1, lb

    if shutil.which("rsync"):
        src = str(tmp_path / "rsync.db")
        sha = make_delta(src, rows=[(i, "y") for i in range(2000, 2100)])
        subprocess.run(["rsync", src, fs.path("c", "incoming") + "/"], check=True)
        lb = batch_after(sha)
        assert lb["deltas"] == 1 and lb["hashed_while_written"] == 1, lb

    # the same bytes, but the first page written twice: not one pass
    src = str(tmp_path / "rewritten.db")
    sha = make_delta(src, rows=[(i, "z") for i in range(3000, 3100)])
    with open(src, "rb") as f:
        data = f.read()
    with open(fs.path("c", "incoming", "rewritten.db"), "wb") as f:
        f.write(data)
        f.flush()
        f.seek(0)
        f.write(data[:4096])
    lb = batch_after(sha)
    assert lb["deltas"] == 1 and lb["hashed_while_written"] == 0, lb
