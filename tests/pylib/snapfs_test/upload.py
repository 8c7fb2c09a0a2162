"""Helpers for the upload tests: snapfs mounted with S3 options against
the throwaway radosgw of conftest.py (fixture `rgw`).

The mount is the integration harness's (harness.py): foreground daemon, log scanned for sanitizer reports
and unexpected output, unmount requires exit 0. Each daemon gets an
environment with only the test server's AWS_* variables (and no AWS
files), so nothing of the machine's own AWS setup leaks in.

The fixture make_s3fs is defined here and offered to every test under
tests/s3/ by its conftest.py.
"""

import hashlib
import json
import os
import subprocess
import time

import pytest

from snapfs_test import harness

REPO = harness.REPO
wait_for = harness.wait_for
run = harness.run

CTL_BIN = os.environ.get("SNAPFS_CTL_BIN") or os.path.join(REPO, "build", "src", "tools", "snapfs-ctl")
PREFIX = "snapfs/"



def require_fuse():
    """Module-level check: exit 77 (SKIP) where FUSE cannot be used, unless
    SNAPFS_REQUIRE_FUSE=1 or SNAPFS_REQUIRE_S3=1 (CI), where it fails."""
    harness.exit_unless_usable(harness.fuse_unusable(), ("SNAPFS_REQUIRE_FUSE", "SNAPFS_REQUIRE_S3"),
                               "the upload tests")


def s3_env(rgw, **over):
    """The daemon's environment: ours without AWS_*, plus the server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(rgw.env())
    # No AWS files of the machine: a missing file is "no profile".
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/snapfs-test-credentials"
    env["AWS_CONFIG_FILE"] = "/nonexistent/snapfs-test-config"
    for k, v in over.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class S3Snapfs(harness.Snapfs):
    """A harness.Snapfs whose daemon runs with its own environment."""

    def __init__(self, workdir, env, opts, store=None, mnt=None):
        super().__init__(workdir, store=store, mnt=mnt, opts=opts)
        self.env = env

    def spawn(self, opts=None, args=()):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = os.path.join(self.workdir, f"snapfs-{self.starts}.log")
        self.logs.append(log)
        cmd = [harness.SNAPFS_BIN, self.store, self.mnt, "-f"]
        o = list(self.opts if opts is None else opts)
        if o:
            cmd += ["-o", ",".join(o)]
        cmd += list(args)
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                         env=self.env)
        return self.proc

    # -- names in the bucket

    def host_id(self):
        return next(o.split("=", 1)[1] for o in self.opts if o.startswith("s3_host_id="))

    def instance(self):
        """The STORE's instance id (its marker's "instance HEX" line)."""
        with open(os.path.join(self.store, "SNAPFS-STORE")) as f:
            for line in f:
                if line.startswith("instance "):
                    return line.split()[1]
        raise AssertionError(f"{self.store}: no instance id in SNAPFS-STORE")

    def snap_name(self, sid):
        """The snapshot's directory in the bucket: ID-HOST-INST."""
        return f"{sid:08d}-{self.host_id()}-{self.instance()}"

    def snap_key(self, coll, sid, leaf=None, prefix=PREFIX):
        return snap_key(coll, sid, self.host_id(), leaf, prefix, self.instance())

    # -- upload status

    def upload(self, coll):
        return self.status(coll)["upload"]

    def wait_upload(self, coll, sid, timeout=120, state="idle"):
        """Waits until snapshot sid (or a newer one) is uploaded and the
        uploader is in state (default idle: pointer swapped); returns the
        upload status object."""
        def done():
            u = self.upload(coll)
            if (u["last_uploaded_id"] or 0) >= sid and (state is None or u["state"] == state):
                return u
            return False
        return wait_for(done, timeout, f"{coll}: snapshot {sid} uploaded (state {state})",
                        interval=0.05)

    def publish(self, coll, rows=None, name=None, big_rows=0, first_id=1, body_bytes=100):
        """Submits a delta (small rows, or big_rows random rows made by
        SQLite) and waits until it is in a published snapshot; returns the
        snapshot id."""
        self._n = getattr(self, "_n", 0) + 1
        name = name or f"d{self._n}.db"
        src = os.path.join(self.workdir, name)
        if big_rows:
            sha = harness.make_big_delta(src, first_id, big_rows, body_bytes=body_bytes)
        else:
            sha = harness.make_delta(src, rows or [(self._n, f"row {self._n}")])
        self.submit(coll, src)
        os.unlink(src)
        self.wait_applied(coll, [sha], timeout=300)
        return self.latest_id(coll)


@pytest.fixture
def make_s3fs(tmp_path, rgw):
    """Factory: make_s3fs(bucket, host_id="h1", opts=(), env=None,
    name=None, start=True) -> a started S3Snapfs with
    s3_bucket=bucket,s3_host_id=host_id plus opts. Closed (and checked)
    at teardown."""
    made = []

    def make(bucket, host_id="h1", opts=(), env=None, name=None, start=True):
        d = tmp_path / (name or host_id)
        d.mkdir()
        o = ["batch_delay=50", f"s3_bucket={bucket}", f"s3_host_id={host_id}"] + list(opts)
        fs = S3Snapfs(d, env if env is not None else s3_env(rgw), o)
        made.append(fs)
        if start:
            fs.start()
        return fs

    yield make
    harness.close_all(made)


# ---------------------------------------------------------------- S3 side

def snap_key(coll, sid, host, leaf=None, prefix=PREFIX, inst=None):
    """PREFIX/COLL/snapshots/ID-HOST-INST/LEAF (ID-HOST/LEAF, the old form, without inst)."""
    d = f"{sid:08d}-{host}" + (f"-{inst}" if inst else "")
    return f"{prefix}{coll}/snapshots/{d}/" + (leaf if leaf is not None else f"{coll}.sqlite3")


def get_json(s3, bucket, key):
    """(document, ETag without quotes) or (None, None) if there is none."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None, None
    return json.loads(r["Body"].read()), r["ETag"].strip('"')


def pointer(s3, bucket, coll, prefix=PREFIX):
    return get_json(s3, bucket, f"{prefix}{coll}/pointer.json")


def lease(s3, bucket, coll, prefix=PREFIX):
    return get_json(s3, bucket, f"{prefix}{coll}/lease.json")


def download(s3, bucket, key, path):
    """Downloads key to path; returns its sha256."""
    r = s3.get_object(Bucket=bucket, Key=key)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in r["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def check_pointer_target(s3, bucket, p, tmpdir):
    """The pointer value p names a whole uploaded snapshot: the database
    object's sha256 and size are the manifest's and the pointer's, and it
    passes integrity_check. Returns the manifest."""
    man = json.loads(s3.get_object(Bucket=bucket, Key=p["keys"]["manifest"])["Body"].read())
    path = os.path.join(str(tmpdir), "check-%d-%s.sqlite3" % (p["generation"], p["host"]))
    sha = download(s3, bucket, p["keys"]["db"], path)
    assert sha == man["sha256"] == p["sha256"], f"pointer {p}: object sha {sha}, manifest {man['sha256']}"
    assert os.path.getsize(path) == man["size"] == p["size"]
    assert harness.integrity(path, immutable=True) == "ok"
    head = s3.head_object(Bucket=bucket, Key=p["keys"]["db"])
    assert head["ETag"].strip('"') == p["etag"]
    os.unlink(path)
    return man


def multipart_uploads(s3, bucket, prefix=PREFIX):
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]


def keys(s3, bucket, prefix=PREFIX):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def ctl(rgw, *args, env=None, check=True, timeout=300):
    """Runs snapfs-ctl with the server's environment."""
    p = subprocess.run([CTL_BIN] + list(args), capture_output=True, text=True, timeout=timeout,
                       env=env or s3_env(rgw))
    if check and p.returncode != 0:
        raise AssertionError(f"snapfs-ctl {args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def now():
    return int(time.time())
