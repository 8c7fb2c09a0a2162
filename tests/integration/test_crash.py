"""kill -9 at any moment, then a restart on the same STORE: only complete,
valid snapshots; no delta applied twice; no accepted delta lost (one
whose cp, hence close(), returned success is applied in the end);
half-made work in staging/ removed; snapshot ids never reused."""

import os
import random
import threading
import time

import pytest

from snapfs_test.harness import make_big_delta, make_delta, run, verify_snapshot, wait_for

BIG_ROWS = 400_000  # large enough that merge and seal each take a visible while
ROUNDS = int(os.environ.get("SNAPFS_CRASH_ROUNDS", "8"))  # kills at random moments


class Crash:
    """What the STORE held at the moment of the kill."""

    def __init__(self, fs, coll):
        self.staging = set(os.listdir(fs.store_path(coll, "staging")))
        self.snapshots = {int(n) for n in os.listdir(fs.store_path(coll, "snapshots"))}
        ids = {int(n) for n in self.staging if n.isdigit()} | self.snapshots
        self.max_id = max(ids) if ids else 0


def restart_after_kill(fs, coll):
    """Records the STORE as the kill left it, restarts, and checks that the
    half-made staging work is gone."""
    crash = Crash(fs, coll)
    fs.start()
    left = crash.staging & set(os.listdir(fs.store_path(coll, "staging")))
    assert not left, f"half-made staging work survived the restart: {left}"
    return crash


def verify_collection(fs, coll, accepted, crashes, gone_markers=()):
    """accepted: {sha: (name, lo, hi)}, the deltas whose cp returned 0 and
    the id range of their rows. Waits for all of them, then checks every
    invariant on what the mount and the STORE show. gone_markers: ids
    inserted by one accepted delta and deleted by a later accepted one; a
    delta applied twice would bring its marker back."""
    fs.wait_applied(coll, list(accepted), timeout=240)
    fs.wait_idle(coll, timeout=120)
    assert os.listdir(fs.store_path(coll, "staging")) == [], "staging/ not empty when idle"
    ids = fs.snapshot_ids(coll)
    assert fs.latest_id(coll) == ids[-1]
    seen = {}
    for sid in ids:
        m = verify_snapshot(fs.snap_dir(coll, sid), coll)
        for d in m["deltas"]:
            assert d["sha256"] not in seen, f"delta {d['name']} in snapshots {seen.get(d['sha256'])} and {sid}"
            seen[d["sha256"]] = sid
    for c in crashes:
        reborn = [s for s in ids if s not in c.snapshots and s <= c.max_id]
        assert not reborn, f"snapshot ids {reborn} reused after a crash (max id at crash {c.max_id})"
    rows = fs.query(coll, "SELECT count(*), count(DISTINCT sha256), count(DISTINCT seq) FROM _snapfs_ledger")
    assert rows[0][0] == rows[0][1] == rows[0][2], rows
    for sha, (name, lo, hi) in accepted.items():
        got = fs.query(coll, "SELECT count(*) FROM items WHERE id BETWEEN ? AND ?", (lo, hi))[0][0]
        assert got == hi - lo + 1, f"{name}: {got} of {hi - lo + 1} rows"
    for m in gone_markers:
        assert fs.query(coll, "SELECT count(*) FROM items WHERE id = ?", (m,)) == [(0,)], \
            f"marker {m} is back: a delta was applied twice"
    # the store's own files agree with what the mount shows
    for n in os.listdir(fs.store_path(coll, "snapshots")):
        verify_snapshot(fs.store_path(coll, "snapshots", n), coll, immutable=True)


BULK_BYTES = 64 << 20  # deltas from this size on are merged under a rollback journal (livedb_bulk)


@pytest.mark.parametrize("state, rounds, body", [
    ("merging", 3, 100),
    ("sealing", 3, 100),
    ("merging", 2, 240),  # each big delta over BULK_BYTES: the rollback journal's turn
], ids=["merging", "sealing", "merging-bulk"])
def test_kill9_while(make_fs, tmp_path, state, rounds, body):
    fs = make_fs(opts=("batch_delay=50", "keep=100"))
    fs.mkcoll("c")
    accepted, crashes = {}, []
    small = str(tmp_path / "small.db")
    accepted[make_delta(small, rows=[(1, "one")])] = ("small.db", 1, 1)
    fs.submit("c", small)
    fs.wait_applied("c", list(accepted))
    for r in range(rounds):
        big = str(tmp_path / f"big{r}.db")
        lo = 1_000_000 * (r + 1)
        accepted[make_big_delta(big, lo, BIG_ROWS, body_bytes=body)] = (f"big{r}.db", lo, lo + BIG_ROWS - 1)
        assert (os.path.getsize(big) >= BULK_BYTES) == (body > 100), os.path.getsize(big)
        fs.submit("c", big)
        wait_for(lambda: fs.status("c")["state"] == state, 120, f"state {state!r}", interval=0.002)
        fs.kill9()
        crashes.append(restart_after_kill(fs, "c"))
    verify_collection(fs, "c", accepted, crashes)


def _writer(fs, coll, plan, accepted):
    """cps each planned delta in order, awaiting its queueing before the
    next (so arrival order is plan order), until the mount dies. Records
    the deltas whose cp exited 0."""
    inc = fs.path(coll, "incoming")
    try:
        for d in plan:
            p = run(["cp", d["path"], os.path.join(inc, d["name"])], check=False, timeout=120)
            if p.returncode != 0:
                return
            accepted[d["sha"]] = (d["name"], d["lo"], d["hi"])
            wait_for(lambda: d["name"] not in os.listdir(inc), 60, f"{d['name']} queued", interval=0.005)
    except Exception:  # noqa: BLE001 - the mount was killed under us
        return


def test_kill9_at_random_moments(make_fs, tmp_path):
    seed = int(os.environ.get("SNAPFS_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"SNAPFS_CRASH_SEED={seed}")
    fs = make_fs(opts=("batch_delay=50", "keep=100"))
    fs.mkcoll("c")
    src = tmp_path / "deltas"
    src.mkdir()
    accepted, crashes, chains = {}, [], []
    next_id, marker = 1, -1
    for rnd in range(ROUNDS):
        # a chain: each delta inserts a new marker and deletes the previous one
        plan, prev = [], None
        for k in range(6):
            n = rng.choice([10, 1000, 50_000, 150_000])
            path = str(src / f"r{rnd}-{k}.db")
            dels = [prev["marker"]] if prev else []
            sha = make_big_delta(path, next_id, n, rows=[(marker, f"m{rnd}-{k}")], deletes=dels)
            d = {"path": path, "name": os.path.basename(path), "lo": next_id, "hi": next_id + n - 1,
                 "sha": sha, "marker": marker}
            if prev:
                chains.append((prev["sha"], sha, prev["marker"]))
            plan.append(d)
            prev = d
            next_id += n
            marker -= 1
        t = threading.Thread(target=_writer, args=(fs, "c", plan, accepted))
        t.start()
        # a random moment to kill at: while writing, queueing, merging or sealing
        t.join(rng.uniform(0.05, 3.0))
        fs.kill9()
        t.join(120)
        assert not t.is_alive()
        crashes.append(restart_after_kill(fs, "c"))
    gone = [m for a, b, m in chains if a in accepted and b in accepted]
    verify_collection(fs, "c", accepted, crashes, gone)
    assert len(crashes) == ROUNDS and len(accepted) > 0


def test_recovery_queues_leftovers_and_keeps_dot_files(make_fs, tmp_path):
    """A file left in STORE/.../incoming/ by a writer that died (the mount
    was killed mid-write) is queued at start: a whole one is applied, a
    torn one rejected; dot-files stay where they are."""
    fs = make_fs()
    fs.mkcoll("c")
    fs.unmount()
    inc = fs.store_path("c", "incoming")
    whole = os.path.join(inc, "whole.db")
    sha = make_delta(whole, rows=[(1, "whole")])
    torn = os.path.join(inc, "torn.db")
    make_delta(torn, rows=[(i, "t" * 200) for i in range(2, 1000)])
    with open(torn, "r+b") as f:
        f.truncate(os.path.getsize(torn) // 3)
    with open(os.path.join(inc, ".partial"), "wb") as f:
        f.write(b"rsync temp")
    fs.start()
    fs.wait_applied("c", [sha])
    fs.wait_rejected("c", "torn.db")
    assert fs.query("c", "SELECT id, body FROM items") == [(1, "whole")]
    assert os.listdir(fs.path("c", "incoming")) == [".partial"]
