"""snapfs's S3 client (through its CLI, snapfs-s3) against a real radosgw.

Every test drives the binary named by SNAPFS_S3_BIN (default
build/src/tools/snapfs-s3) as an operator would, with credentials only in the
environment, and checks what reached the server with boto3 (fixtures in
conftest.py). Covered: put/get/head/rm/ls (with > 1000 keys, so the
listing continues), multipart upload read back with boto3, conditional
PUTs (If-None-Match: *, If-Match with radosgw's unquoted-ETag quirk), a
wrong secret, a missing bucket, faults injected by faultproxy.py (503s,
connection resets mid-body, a stalled connection) and flat memory while
uploading a file much larger than a part.
"""

import concurrent.futures
import hashlib
import json
import os
import subprocess
import time

import pytest

from snapfs_test.faultproxy import FaultProxy

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("SNAPFS_S3_BIN", os.path.join(ROOT, "build", "src", "tools", "snapfs-s3"))


@pytest.fixture(scope="session", autouse=True)
def _binary():
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"{BIN} is not built (set SNAPFS_S3_BIN)")


def sanitized():
    """Is BIN built with AddressSanitizer?"""
    p = subprocess.run(["ldd", BIN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return "libasan" in p.stdout


def base_env(rgw, **over):
    """rgw's variables only: no AWS_* from the caller, no ~/.aws files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(rgw.env())
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_CONFIG_FILE"] = os.devnull
    env.update(over)
    return env


class Result:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr
        self.json = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None

    def __repr__(self):
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


def cli(rgw, bucket, *args, env=None, endpoint=None, timeout=300):
    cmd = [BIN, "--bucket", bucket]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    p = subprocess.run(cmd + list(args), env=env or base_env(rgw), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    r = Result(p)
    # Whatever happened, the secret never shows.
    assert rgw.secret_key not in r.out + r.err
    assert "runtime error" not in r.err and "AddressSanitizer" not in r.err, r.err
    return r


def ok(r):
    assert r.rc == 0, r
    assert r.json is not None and "\n" not in r.out.strip(), r
    return r.json


def write_random(path, size, seed=None):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            chunk = os.urandom(n)
            h.update(chunk)
            f.write(chunk)
            left -= n
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def s3_sha256(s3, bucket, key):
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        h.update(chunk)
    return h.hexdigest()


def exists(s3, bucket, key):
    from botocore.exceptions import ClientError
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise


# ---------------------------------------------------------------- basics

def test_put_head_get_ls_rm(rgw, s3, bucket, tmp_path):
    src = tmp_path / "src"
    digest = write_random(src, 3 * MiB + 17)
    key = "dir/a key with spaces+plus/ünïcode~(1).bin"
    put = ok(cli(rgw, bucket, "put", key, str(src)))
    assert put["size"] == 3 * MiB + 17 and put["retries"] == 0
    assert put["etag"] == hashlib.md5(src.read_bytes()).hexdigest()

    # boto3 sees the same object under the same key.
    assert s3_sha256(s3, bucket, key) == digest

    head = ok(cli(rgw, bucket, "head", key))
    assert head["size"] == 3 * MiB + 17
    assert head["etag"] == put["etag"]
    assert abs(time.mktime(time.strptime(head["last_modified"], "%Y-%m-%dT%H:%M:%SZ"))
               - time.mktime(time.gmtime())) < 300

    dst = tmp_path / "dst"
    got = ok(cli(rgw, bucket, "get", key, str(dst)))
    assert got["sha256"] == digest == sha256_file(dst)
    assert got["length"] == got["size"] == 3 * MiB + 17

    rng = ok(cli(rgw, bucket, "get", key, str(tmp_path / "range"), "--range", "1000-1999"))
    assert rng["length"] == 1000 and rng["size"] == 3 * MiB + 17
    assert (tmp_path / "range").read_bytes() == src.read_bytes()[1000:2000]

    ls = ok(cli(rgw, bucket, "ls", "dir/"))
    assert [o["key"] for o in ls["objects"]] == [key]
    assert ls["objects"][0]["size"] == 3 * MiB + 17

    ok(cli(rgw, bucket, "rm", key))
    assert not exists(s3, bucket, key)
    r = cli(rgw, bucket, "head", key)
    assert r.rc == 1 and "404" in r.err, r
    r = cli(rgw, bucket, "get", key, str(tmp_path / "gone"))
    assert r.rc == 1 and "404 NoSuchKey" in r.err, r
    assert not (tmp_path / "gone").exists()
    assert [p.name for p in tmp_path.iterdir() if "snapfs-s3" in p.name] == []


def test_metadata_and_content_type(rgw, s3, bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"{}")
    ok(cli(rgw, bucket, "put", "m", str(f), "--content-type", "application/json",
           "--meta", "snapshot-id=42", "--meta", "Host=a b"))
    head = ok(cli(rgw, bucket, "head", "m"))
    assert head["content_type"] == "application/json"
    assert head["metadata"] == {"snapshot-id": "42", "host": "a b"}
    assert s3.head_object(Bucket=bucket, Key="m")["Metadata"] == {"snapshot-id": "42", "host": "a b"}
    big = tmp_path / "big"
    write_random(big, 11 * MiB)
    ok(cli(rgw, bucket, "upload", "mb", str(big), "--part-size", "5M", "--meta", "sha256=abc"))
    assert ok(cli(rgw, bucket, "head", "mb"))["metadata"] == {"sha256": "abc"}


def test_empty_object(rgw, s3, bucket, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    put = ok(cli(rgw, bucket, "put", "empty", str(empty)))
    assert put["etag"] == hashlib.md5(b"").hexdigest()
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0
    up = ok(cli(rgw, bucket, "upload", "empty2", str(empty)))
    assert up["size"] == 0 and up["parts"] == 0


def test_ls_continues_past_1000_keys(rgw, s3, bucket, tmp_path):
    keys = sorted([f"many/{i:05d}" for i in range(1050)] +
                  ["many/sp ace", "many/plus+sign", "many/üni", "many/a%20b"])

    def put(k):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(put, keys))
    s3.put_object(Bucket=bucket, Key="other/x", Body=b"x")

    ls = ok(cli(rgw, bucket, "ls", "many/"))
    assert ls["count"] == len(keys)
    assert [o["key"] for o in ls["objects"]] == sorted(keys, key=lambda k: k.encode())
    assert ls["requests"] >= 2  # one page holds at most 1000
    byname = {o["key"]: o for o in ls["objects"]}
    assert byname["many/plus+sign"]["size"] == len("many/plus+sign")
    assert byname["many/a%20b"]["etag"] == hashlib.md5(b"many/a%20b").hexdigest()

    everything = ok(cli(rgw, bucket, "ls"))
    assert everything["count"] == len(keys) + 1


# ---------------------------------------------------------------- multipart

def test_multipart_upload_40mib_read_back_with_boto3(rgw, s3, bucket, tmp_path):
    src = tmp_path / "big"
    digest = write_random(src, 40 * MiB)
    progress = cli(rgw, bucket, "upload", "snap/big.db", str(src), "--part-size", "5M",
                   "--parallel", "4", "--progress")
    up = ok(progress)
    assert up["parts"] == 8 and up["size"] == 40 * MiB
    assert up["etag"].endswith("-8")
    assert up["etag_is_md5"] is True
    assert "41943040 of 41943040 bytes (100%)" in progress.err

    # What boto3 reads back is the file.
    assert s3_sha256(s3, bucket, "snap/big.db") == digest
    head = s3.head_object(Bucket=bucket, Key="snap/big.db")
    assert head["ContentLength"] == 40 * MiB
    assert head["ETag"].strip('"') == up["etag"]
    # Nothing left in progress.
    assert ok(cli(rgw, bucket, "uploads", "snap/"))["count"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    # Below the threshold it is one PUT.
    small = tmp_path / "small"
    write_random(small, 2 * MiB)
    one = ok(cli(rgw, bucket, "upload", "snap/small", str(small)))
    assert one["parts"] == 0 and one["etag"] == hashlib.md5(small.read_bytes()).hexdigest()


def test_parallel_download_of_one_version(rgw, s3, bucket, tmp_path):
    src = tmp_path / "big"
    digest = write_random(src, 37 * MiB + 123)
    s3.upload_file(str(src), bucket, "dl/big")
    etag = s3.head_object(Bucket=bucket, Key="dl/big")["ETag"].strip('"')
    out = tmp_path / "out"
    progress = cli(rgw, bucket, "download", "dl/big", str(out), "--part-size", "5M",
                   "--parallel", "4", "--progress")
    got = ok(progress)
    # Eight ranges, hashed in order into the SHA-256 of the whole object.
    assert got["parts"] == 8 and got["size"] == 37 * MiB + 123, got
    assert got["sha256"] == digest == sha256_file(out)
    assert got["etag"] == etag
    assert f"{37 * MiB + 123} of {37 * MiB + 123} bytes (100%)" in progress.err

    # Held to one version: another ETag is refused before a byte is written.
    r = cli(rgw, bucket, "download", "dl/big", str(tmp_path / "o2"), "--if-match", "0" * 32)
    assert r.rc == 3 and "ETag" in r.err, r
    assert not (tmp_path / "o2").exists()
    # An empty object downloads as an empty file; a missing key is an error naming it.
    s3.put_object(Bucket=bucket, Key="dl/empty", Body=b"")
    e = ok(cli(rgw, bucket, "download", "dl/empty", str(tmp_path / "e")))
    assert e["size"] == 0 and e["parts"] == 0 and (tmp_path / "e").read_bytes() == b""
    r = cli(rgw, bucket, "download", "dl/none", str(tmp_path / "n"))
    assert r.rc == 1 and "dl/none" in r.err and "404" in r.err, r


def test_download_survives_resets_and_503s(rgw, s3, bucket, tmp_path):
    src = tmp_path / "big"
    digest = write_random(src, 24 * MiB)
    s3.upload_file(str(src), bucket, "dl/faulty")
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), fail_first=2, get_resets=3, reset_after=MiB) as proxy:
        r = cli(rgw, bucket, "--retry-base-ms", "20", "download", "dl/faulty",
                str(tmp_path / "o"), "--part-size", "5M", "--parallel", "3", endpoint=proxy.url)
        st = proxy.stats()
    got = ok(r)
    # Answers cut short mid-body are retried from the start of their range.
    assert st["injected_503"] == 2 and st["injected_get_resets"] == 3, st
    assert got["download_retries"] >= 3, (got, r.err)
    assert got["sha256"] == digest == sha256_file(tmp_path / "o")


def test_part_size_below_minimum_is_a_usage_error(rgw, bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    r = cli(rgw, bucket, "upload", "k", str(f), "--part-size", "1M")
    assert r.rc == 2 and "--part-size" in r.err


def test_list_and_abort_stale_uploads(rgw, s3, bucket):
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=f"stale/{i} x")["UploadId"] for i in range(3)]
    s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/y")
    listed = ok(cli(rgw, bucket, "uploads", "stale/"))
    assert listed["count"] == 3
    assert sorted(u["upload_id"] for u in listed["uploads"]) == sorted(ids)
    assert {u["key"] for u in listed["uploads"]} == {"stale/0 x", "stale/1 x", "stale/2 x"}
    for u in listed["uploads"]:
        ok(cli(rgw, bucket, "abort", u["key"], u["upload_id"]))
    assert ok(cli(rgw, bucket, "uploads", "stale/"))["count"] == 0
    assert ok(cli(rgw, bucket, "uploads"))["count"] == 1
    # Aborting what is gone is not an error.
    ok(cli(rgw, bucket, "abort", "stale/0 x", ids[0]))


# ---------------------------------------------------------------- conditions

def test_conditional_puts(rgw, s3, bucket, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    c.write_bytes(b"third")

    first = ok(cli(rgw, bucket, "put", "ptr", str(a), "--if-none-match"))
    r = cli(rgw, bucket, "put", "ptr", str(b), "--if-none-match")
    assert r.rc == 3 and "412" in r.err and "PreconditionFailed" in r.err, r
    assert "retrying" not in r.err
    assert s3.get_object(Bucket=bucket, Key="ptr")["Body"].read() == b"first"

    # If-Match with the current ETag (as HEAD prints it, or quoted) wins ...
    second = ok(cli(rgw, bucket, "put", "ptr", str(b), "--if-match", first["etag"]))
    third = ok(cli(rgw, bucket, "put", "ptr", str(c), "--if-match", f'"{second["etag"]}"'))
    assert s3.get_object(Bucket=bucket, Key="ptr")["Body"].read() == b"third"
    # ... a stale one loses, and the object stays.
    r = cli(rgw, bucket, "put", "ptr", str(a), "--if-match", first["etag"])
    assert r.rc == 3, r
    assert s3.get_object(Bucket=bucket, Key="ptr")["Body"].read() == b"third"
    assert ok(cli(rgw, bucket, "head", "ptr"))["etag"] == third["etag"]
    # If-Match on a missing key is a failed precondition too (412 here, 404 on AWS).
    r = cli(rgw, bucket, "put", "nothere", str(a), "--if-match", first["etag"])
    assert r.rc == 3, r


def test_racing_create_only_one_wins(rgw, s3, bucket, tmp_path):
    files = []
    for i in range(8):
        f = tmp_path / f"w{i}"
        f.write_bytes(f"writer {i}".encode())
        files.append(f)
    env = base_env(rgw)
    procs = [subprocess.Popen([BIN, "--bucket", bucket, "put", "lease", str(f), "--if-none-match"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in files]
    outs = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
    winners = [i for i, (rc, _, _) in enumerate(outs) if rc == 0]
    assert len(winners) == 1, outs
    assert all(rc == 3 for i, (rc, _, _) in enumerate(outs) if i not in winners), outs
    body = s3.get_object(Bucket=bucket, Key="lease")["Body"].read()
    assert body == f"writer {winners[0]}".encode()


# ---------------------------------------------------------------- errors

def test_wrong_secret_is_clear_and_fast(rgw, s3, bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    env = base_env(rgw, AWS_SECRET_ACCESS_KEY="not-the-secret-at-all-0000000000000000000")
    t0 = time.monotonic()
    r = cli(rgw, bucket, "put", "k", str(f), env=env)
    assert r.rc == 1, r
    assert f"PUT s3://{bucket}/k: 403 SignatureDoesNotMatch" in r.err, r
    assert "secret" in r.err  # the hint says what to check
    assert "not-the-secret" not in r.err
    assert "retrying" not in r.err and time.monotonic() - t0 < 10
    assert not exists(s3, bucket, "k")

    big = tmp_path / "big"
    write_random(big, 12 * MiB)
    r = cli(rgw, bucket, "upload", "k", str(big), "--part-size", "5M", env=env)
    assert r.rc == 1 and "SignatureDoesNotMatch" in r.err, r
    assert not exists(s3, bucket, "k")

    env = base_env(rgw, AWS_ACCESS_KEY_ID="AKIDNOSUCHKEY0000000")
    r = cli(rgw, bucket, "ls", env=env)
    assert r.rc == 1 and "403 InvalidAccessKeyId" in r.err, r


def test_missing_bucket(rgw, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    for args in (["put", "k", str(f)], ["ls"], ["upload", "k", str(f)], ["uploads"]):
        t0 = time.monotonic()
        r = cli(rgw, "no-such-bucket-here", *args)
        assert r.rc == 1, (args, r)
        assert "404 NoSuchBucket" in r.err and "s3://no-such-bucket-here/" in r.err, (args, r)
        assert "retrying" not in r.err and time.monotonic() - t0 < 10


def test_usage_errors(rgw, bucket):
    assert cli(rgw, bucket, "frobnicate").rc == 2
    assert cli(rgw, bucket, "put", "only-key").rc == 2
    assert cli(rgw, bucket, "get", "k", "f", "--range", "9-1").rc == 2
    assert cli(rgw, bucket, "put", "k", "f", "--if-match", "x", "--if-none-match").rc == 2
    r = subprocess.run([BIN, "--help"], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 0 and "upload KEY FILE" in r.stdout


def test_verbose_log_has_no_secret(rgw, bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    env = base_env(rgw, AWS_SESSION_TOKEN="SESSIONTOKEN-SHOULD-NOT-LEAK")
    r = cli(rgw, bucket, "-v", "put", "k", str(f), env=env)
    # radosgw refuses an unknown session token; whatever it says, nothing secret is printed.
    assert "SESSIONTOKEN-SHOULD-NOT-LEAK" not in r.out + r.err


# ---------------------------------------------------------------- faults

def test_upload_survives_503s_and_resets(rgw, s3, bucket, tmp_path):
    src = tmp_path / "big"
    digest = write_random(src, 40 * MiB)
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), fail_first=3, resets=4, reset_after=MiB) as proxy:
        r = cli(rgw, bucket, "--retry-base-ms", "20", "upload", "faulty", str(src),
                "--part-size", "5M", "--parallel", "4", endpoint=proxy.url)
        st = proxy.stats()
    up = ok(r)
    assert st["injected_503"] == 3 and st["injected_resets"] == 4, st
    # Every injected fault was retried, and counted.
    assert up["retries"] >= 7 and up["upload_retries"] >= 7, (up, r.err)
    assert "SlowDown" in r.err and "retrying" in r.err
    assert up["parts"] == 8 and up["size"] == 40 * MiB
    assert s3_sha256(s3, bucket, "faulty") == digest
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_single_put_and_get_survive_resets(rgw, s3, bucket, tmp_path):
    src = tmp_path / "f"
    digest = write_random(src, 4 * MiB)
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), fail_first=1, resets=2, reset_after=100_000) as proxy:
        put = ok(cli(rgw, bucket, "--retry-base-ms", "10", "put", "k", str(src), endpoint=proxy.url))
        got = ok(cli(rgw, bucket, "--retry-base-ms", "10", "get", "k", str(tmp_path / "g"),
                     endpoint=proxy.url))
    assert put["retries"] == 3
    assert got["sha256"] == digest == s3_sha256(s3, bucket, "k")


def test_stalled_connection_is_abandoned_and_retried(rgw, s3, bucket, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"stalled once")
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), stalls=1) as proxy:
        t0 = time.monotonic()
        r = cli(rgw, bucket, "--low-speed-time", "2", "--retry-base-ms", "10", "put", "k", str(src),
                endpoint=proxy.url)
        took = time.monotonic() - t0
        assert proxy.stats()["injected_stalls"] == 1
    put = ok(r)
    assert put["retries"] == 1 and 1.5 < took < 30, (put, took, r.err)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"stalled once"


def test_gives_up_after_max_attempts(rgw, bucket, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x")
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), fail_first=100) as proxy:
        r = cli(rgw, bucket, "--max-attempts", "3", "--retry-base-ms", "5", "put", "k", str(src),
                endpoint=proxy.url)
        assert proxy.stats()["injected_503"] == 3
    assert r.rc == 1 and "503 SlowDown" in r.err and "3 attempts" in r.err, r


def test_interrupted_upload_is_aborted(rgw, s3, bucket, tmp_path):
    """SIGINT mid-upload: the CLI cancels, aborts the multipart upload, exits 1."""
    src = tmp_path / "big"
    write_random(src, 30 * MiB)
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    # The parts (PUTs) hang; CreateMultipartUpload (POST) and the abort (DELETE) pass.
    with FaultProxy(("127.0.0.1", port), stall_method="PUT") as proxy:
        p = subprocess.Popen([BIN, "--bucket", bucket, "--endpoint", proxy.url, "upload", "cut",
                              str(src), "--part-size", "5M"], env=base_env(rgw),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while proxy.stats()["injected_stalls"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) != []
        p.send_signal(2)
        rc = p.wait(60)
        err = p.stderr.read()
    assert rc == 1 and "cancelled" in err, err
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not exists(s3, bucket, "cut")


# ---------------------------------------------------------------- memory

def test_memory_stays_flat(rgw, s3, bucket, tmp_path):
    """A 512 MiB upload in 16 MiB parts, 4 in flight: memory is buffers, not parts."""
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(512 * MiB)  # sparse: the disk is not the test
    up = ok(cli(rgw, bucket, "upload", "flat", str(src)))
    assert up["parts"] == 32 and up["size"] == 512 * MiB
    # VmHWM of the CLI itself (ru_maxrss would include the forked pytest):
    # a 1 MiB hashing buffer and curl's buffers per part in flight, plus the
    # libraries; one 16 MiB part held in memory would already show.
    # ASan's shadow memory and quarantine add their own share.
    limit_mib = 160 if sanitized() else 32
    assert 0 < up["peak_rss_kib"] < limit_mib * 1024, up
    assert s3.head_object(Bucket=bucket, Key="flat")["ContentLength"] == 512 * MiB


# ---------------------------------------------------------------- deadlines and batches

def test_rm_prefix_deletes_in_batches_of_1000(rgw, s3, bucket):
    keys = [f"gone/{i:05d}" for i in range(1050)] + ["gone/sp ace", "gone/a&b<c>", "gone/üni"]

    def put(k):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(put, keys))
    s3.put_object(Bucket=bucket, Key="kept/x", Body=b"x")
    r = ok(cli(rgw, bucket, "rm-prefix", "gone/"))
    assert r["deleted"] == len(keys) and r["delete_calls"] == 2, r
    assert s3.list_objects_v2(Bucket=bucket, Prefix="gone/").get("KeyCount") == 0
    assert exists(s3, bucket, "kept/x")


def test_slow_delete_objects_and_abort_are_waited_out(rgw, s3, bucket):
    """A server that works 20 s on DeleteObjects and AbortMultipartUpload
    before it answers, sending nothing: with a low-speed limit of 2 s the
    calls are still waited out, once each, never cut off and asked again."""
    from snapfs_test.faultproxy import Rule
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"slow/{i}", Body=b"x")
    up = s3.create_multipart_upload(Bucket=bucket, Key="slow-mp")["UploadId"]
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    rules = [Rule("POST", "?delete", "delay", 20), Rule("DELETE", "uploadId=", "delay", 20)]
    with FaultProxy(("127.0.0.1", port), rules=rules) as proxy:
        r = ok(cli(rgw, bucket, "--low-speed-time", "2", "--timeout", "5", "rm-prefix", "slow/",
                   endpoint=proxy.url))
        assert r["deleted"] == 3
        ok(cli(rgw, bucket, "--low-speed-time", "2", "--timeout", "5", "abort", "slow-mp", up,
               endpoint=proxy.url))
        assert proxy.requests("POST", "?delete") == 1, proxy.seen
        assert proxy.requests("DELETE", "uploadId=") == 1, proxy.seen
        assert proxy.stats()["injected_delays"] == 2
    assert s3.list_objects_v2(Bucket=bucket, Prefix="slow/").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_slow_complete_is_waited_out(rgw, s3, bucket, tmp_path):
    from snapfs_test.faultproxy import Rule
    src = tmp_path / "f"
    digest = write_random(src, 11 * MiB)
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), rules=[Rule("POST", "uploadId=", "delay", 20)]) as proxy:
        r = ok(cli(rgw, bucket, "--low-speed-time", "2", "--timeout", "5", "upload", "k", str(src),
                   "--part-size", "5M", endpoint=proxy.url))
        assert proxy.requests("POST", "uploadId=") == 1, proxy.seen  # CompleteMultipartUpload, once
    assert r["retries"] == 0 and r["parts"] == 3, r
    assert s3_sha256(s3, bucket, "k") == digest


def test_a_stalled_call_ends_at_its_deadline_and_says_which(rgw, bucket):
    from snapfs_test.faultproxy import Rule
    port = int(rgw.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), rules=[Rule("HEAD", "", "stall")]) as proxy:
        r = cli(rgw, bucket, "--timeout", "3", "head", "k", endpoint=proxy.url)
        assert proxy.stats()["injected_stalls"] >= 1
    assert r.rc == 1 and "deadline of 3.0 s for this call passed without an answer" in r.err, r
