"""Mount, unmount, signals, daemon mode and /etc/fstab-style mounting: a
clean stop exits 0 and keeps every delta that was accepted."""

import os
import shutil
import signal
import time

from snapfs_test.harness import SNAPFS_BIN, make_big_delta, make_delta, run, wait_for


def test_fusermount_unmount_exits_zero(fs):
    fs.mkcoll("c")
    fs.unmount()
    assert not os.path.ismount(fs.mnt)


def test_sigterm_exits_zero(fs):
    fs.mkcoll("c")
    fs.signal(signal.SIGTERM)


def test_sigint_exits_zero(fs):
    fs.mkcoll("c")
    fs.signal(signal.SIGINT)


def _daemons_on(mnt):
    """pids of processes whose command line names mnt."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if mnt.encode() in argv and any(a.endswith(b"snapfs") for a in argv[:1]):
            out.append(int(pid))
    return out


def test_daemon_mode_returns_once_mounted(tmp_path):
    store, mnt = str(tmp_path / "store"), str(tmp_path / "mnt")
    os.mkdir(mnt)
    p = run([SNAPFS_BIN, store, mnt, "-o", "batch_delay=50"], timeout=30)
    try:
        # returns only when the mount is ready: no waiting here
        assert os.path.ismount(mnt)
        os.mkdir(os.path.join(mnt, "c"))
        assert os.path.isdir(os.path.join(mnt, "c", "incoming"))
        assert _daemons_on(mnt), "no daemon left running"
    finally:
        run(["fusermount3", "-u", mnt], check=False)
    wait_for(lambda: not _daemons_on(mnt), 30, "the daemon to exit after fusermount3 -u")
    assert p.returncode == 0


def test_mount_fuse3_helper_like_fstab(tmp_path):
    """What an /etc/fstab line `STORE MNT fuse.snapfs defaults,_netdev,keep=20`
    makes mount(8) run: mount.fuse3 STORE MNT -t snapfs -o OPTS, which
    finds snapfs in PATH and daemonizes it. (mount(8) itself resets PATH,
    so through it snapfs must be installed in sbin.)"""
    helper = shutil.which("mount.fuse3") or "/sbin/mount.fuse3"
    assert os.path.exists(helper), "mount.fuse3 missing (package fuse3)"
    store, mnt = str(tmp_path / "store"), str(tmp_path / "mnt")
    os.mkdir(mnt)
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(SNAPFS_BIN)) + ":" + os.environ["PATH"])
    p = run([helper, store, mnt, "-t", "snapfs", "-o", "defaults,_netdev,noauto,keep=20,batch_delay=50"],
            check=False, env=env, timeout=30)
    try:
        assert p.returncode == 0, p.stderr
        assert os.path.ismount(mnt)
        os.mkdir(os.path.join(mnt, "c"))
        assert os.path.exists(os.path.join(store, "collections", "c"))
    finally:
        run(["umount", mnt], check=False)
    wait_for(lambda: not _daemons_on(mnt), 30, "the daemon to exit after umount")


def test_unmount_with_queued_delta_keeps_it(make_fs, tmp_path):
    """A delta queued but not yet merged (long batch_delay) survives a
    clean unmount and is applied after the restart."""
    fs = make_fs(opts=("batch_delay=60000",))
    fs.mkcoll("c")
    src = str(tmp_path / "d1.db")
    sha = make_delta(src, rows=[(1, "one")])
    fs.submit("c", src)
    wait_for(lambda: fs.status("c")["queued"] == 1, 30, "the delta to be queued")
    t0 = time.monotonic()
    fs.unmount()
    assert time.monotonic() - t0 < 30, "unmount waited for the batch delay"
    fs.start(opts=("batch_delay=50",))
    fs.wait_applied("c", [sha])
    assert fs.query("c", "SELECT body FROM items WHERE id = 1") == [("one",)]


def test_sigterm_during_merge_finishes_and_exits_zero(make_fs, tmp_path):
    fs = make_fs()
    fs.mkcoll("c")
    src = str(tmp_path / "big.db")
    sha = make_big_delta(src, 1, 300_000)
    fs.submit("c", src)
    wait_for(lambda: fs.status("c")["state"] in ("merging", "sealing"), 60, "the merge to start", interval=0.005)
    fs.signal(signal.SIGTERM, timeout=120)
    fs.start()
    fs.wait_applied("c", [sha], timeout=120)
    assert fs.query("c", "SELECT count(*) FROM items") == [(300_000,)]
    assert os.listdir(fs.store_path("c", "staging")) == []


def test_status_reachable_while_merging(make_fs, tmp_path):
    """Status answers promptly while a large delta merges: the FUSE layer
    does not wait on the compactor."""
    fs = make_fs()
    fs.mkcoll("c")
    src = str(tmp_path / "big.db")
    sha = make_big_delta(src, 1, 300_000)
    fs.submit("c", src)
    wait_for(lambda: fs.status("c")["state"] == "merging", 60, "the merge to start", interval=0.005)
    t0 = time.monotonic()
    fs.status("c")
    fs.status()
    os.listdir(fs.path("c", "snapshots"))
    assert time.monotonic() - t0 < 1.0, "status/readdir blocked behind the merge"
    fs.wait_applied("c", [sha], timeout=120)


def test_foreground_log_names_collection_and_delta(fs, tmp_path):
    fs.mkcoll("lines")
    src = str(tmp_path / "src.db")
    sha = make_delta(src, rows=[(1, "x")])
    fs.submit("lines", src, name="d-42.db")
    fs.wait_applied("lines", [sha])
    with open(fs.logs[-1]) as f:
        lines = f.read().splitlines()
    assert any("lines" in line and "d-42.db" in line for line in lines), "\n".join(lines)


def test_loglevel_err_keeps_info_and_warnings_out(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=50", "loglevel=err"))
    fs.mkcoll("c")
    good, bad = str(tmp_path / "good.db"), str(tmp_path / "bad.db")
    sha = make_delta(good, rows=[(1, "x")])
    with open(bad, "w") as f:
        f.write("not a database\n")
    fs.submit("c", good)
    fs.submit("c", bad)
    fs.wait_applied("c", [sha])
    fs.wait_rejected("c", "bad.db")
    with open(fs.logs[-1]) as f:
        text = f.read()
    assert " snapfs info:" not in text and " snapfs warning:" not in text, text
