#!/usr/bin/env python3
"""Upload throughput: snapfs's uploader against rclone, same file, same
server, same run.

Starts a throwaway Ceph RADOS Gateway (tests/pylib/snapfs_test/radosgw.py), mounts snapfs
with S3 options on a fresh STORE, gets a ~SIZE_MB snapshot made (one big
delta), and then, ROUNDS times each, alternating:

  snapfs   unmount, forget the upload (upload.json), mount again: the
           uploader uploads the newest snapshot at start; the time is the
           daemon's own snapfs_upload_seconds (pointer read, multipart
           upload with per-part SHA-256 + MD5, HEAD, the file's SHA-256
           against the manifest, manifest PUT), then the pointer swap;
  rclone   `rclone copyto` of the same snapshot file from the STORE to the
           same server (provider Ceph, path style), with rclone's default
           settings and again with snapfs's part size and parallelism.

Both read a warm page cache. Prints a table (median seconds, MB/s) and
the ratio of throughputs snapfs / rclone.

usage: bench/upload.py [--size-mb 600] [--rounds 3] [--build build]
                       [--part-size 16M] [--parallel 4] [--workdir DIR]
(--workdir: where the STORE goes, on the disk to measure; removed after.)
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))  # a script: the test package by path
from snapfs_test import harness, radosgw, upload  # noqa: E402


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


def rclone_env(gw):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update({
        "RCLONE_CONFIG_RGW_TYPE": "s3",
        "RCLONE_CONFIG_RGW_PROVIDER": "Ceph",
        "RCLONE_CONFIG_RGW_ACCESS_KEY_ID": gw.access_key,
        "RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY": gw.secret_key,
        "RCLONE_CONFIG_RGW_ENDPOINT": gw.endpoint,
        "RCLONE_CONFIG_RGW_REGION": gw.region,
        "RCLONE_CONFIG_RGW_FORCE_PATH_STYLE": "true",
    })
    return env


def snapfs_env(gw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(gw.env())
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = "/nonexistent"
    return env


Mount = upload.S3Snapfs  # a mount with the environment given


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def empty_bucket(s3, bucket):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--part-size", default="16M")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    harness.SNAPFS_BIN = os.path.join(a.build, "src", "mount", "snapfs")
    if not shutil.which("rclone"):
        sys.exit("bench/upload.py: rclone not installed (apt-get install rclone)")
    why = radosgw.unavailable_reason()
    if why:
        sys.exit(f"bench/upload.py: {why}")

    # A fresh directory (STORE, mount, logs) inside --workdir (default: the temp dir).
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="snapfs-bench-upload-", dir=a.workdir)
    # Deleted objects are only garbage-collected hours later: room for all.
    gw = radosgw.RadosGW(memstore_bytes=max(4 << 30, a.size_mb * (1 << 20) * (3 * a.rounds + 2) + (1 << 30)))
    gw.start()
    fs = None
    try:
        s3 = gw.client()
        bucket = gw.create_bucket("bench-upload")
        opts = ["batch_delay=50", "keep=2", f"s3_bucket={bucket}", "s3_host_id=bench", "s3_cluster=off",
                f"s3_part_size={a.part_size}", f"s3_parallel={a.parallel}"]
        fs = Mount(work, snapfs_env(gw), opts)
        fs.start()
        fs.mkcoll("c")
        delta = os.path.join(work, "big.db")
        rows = a.size_mb * (1 << 20) // 118
        print(f"making a ~{a.size_mb} MB delta ({rows} rows) and its snapshot...", flush=True)
        sha = harness.make_big_delta(delta, 1, rows, body_bytes=100)
        t0 = time.monotonic()
        fs.submit("c", delta)
        os.unlink(delta)
        fs.wait_applied("c", [sha], timeout=1800)
        sid = fs.latest_id("c")
        snap = fs.store_path("c", "snapshots", "%08d" % sid, "c.sqlite3")
        size = os.path.getsize(snap)
        print(f"snapshot {sid}: {size / 1e6:.0f} MB, merged and sealed in {time.monotonic() - t0:.0f} s",
              flush=True)

        def snapfs_round():
            # The upload that started with the snapshot (or the last
            # restart) is waited out, then forgotten and done again.
            harness.wait_for(lambda: fs.status("c")["upload"]["state"] == "idle" and
                             fs.status("c")["upload"]["last_uploaded_id"] == sid, 1800,
                             "upload done")
            fs.unmount()
            os.unlink(fs.store_path("c", "upload.json"))
            empty_bucket(s3, bucket)
            warm(snap)
            fs.start()
            harness.wait_for(lambda: fs.status("c")["upload"]["state"] == "idle" and
                             fs.status("c")["upload"]["last_uploaded_id"] == sid, 1800,
                             "upload done")
            u = fs.status("c")["upload"]
            assert u["last_uploaded"]["sha256"] == fs.manifest("c", sid)["sha256"]
            with open(f"/proc/{fs.proc.pid}/status") as f:
                hwm = [ln.split()[1] for ln in f if ln.startswith("VmHWM:")][0]
            peak_rss.append(int(hwm) >> 10)
            return fs.metric("snapfs_upload_seconds", "c")

        def rclone_round(extra):
            empty_bucket(s3, bucket)
            warm(snap)
            t = time.monotonic()
            harness.run(["rclone", "copyto", "--retries", "1", snap,
                         f"rgw:{bucket}/rclone/c.sqlite3"] + extra,
                        timeout=1800, env=rclone_env(gw))
            return time.monotonic() - t

        ps = parse_size(a.part_size)
        matched = ["--s3-chunk-size", f"{ps >> 20}M", "--s3-upload-concurrency", str(a.parallel),
                   "--s3-upload-cutoff", f"{ps >> 20}M"]
        peak_rss = []  # MiB, of the snapfs process that did the upload
        results = {"snapfs": [], "rclone (defaults)": [], "rclone (same parts)": []}
        for r in range(a.rounds):
            order = [("snapfs", None), ("rclone (defaults)", []), ("rclone (same parts)", matched)]
            if r % 2:
                order.reverse()
            for name, extra in order:
                secs = snapfs_round() if extra is None else rclone_round(extra)
                results[name].append(secs)
                print(f"  round {r + 1}: {name:20s} {secs:6.2f} s  {size / secs / 1e6:7.1f} MB/s",
                      flush=True)
        print()
        print(f"upload of a {size / 1e6:.0f} MB snapshot to radosgw on 127.0.0.1, median of "
              f"{a.rounds} (snapfs: s3_part_size={a.part_size}, s3_parallel={a.parallel}):")
        med = {k: statistics.median(v) for k, v in results.items()}
        for k, v in med.items():
            print(f"  {k:22s} {v:6.2f} s  {size / v / 1e6:7.1f} MB/s")
        print(f"  snapfs peak RSS (VmHWM) over a whole mount with one upload: "
              f"{max(peak_rss)} MiB")
        for k in ("rclone (defaults)", "rclone (same parts)"):
            print(f"  snapfs / {k}: {med[k] / med['snapfs']:.2f}x throughput")
    finally:
        if fs is not None:
            try:
                fs.close()
            except AssertionError as e:
                print(f"bench/upload.py: {e}", file=sys.stderr)
        gw.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
