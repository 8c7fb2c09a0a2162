"""The per-collection lease object: a stale lease is taken over with the
next fencing token; a live lease of another host keeps snapfs from
writing the pointer until it expires; a lease document that is not one
is reported, never overwritten blindly.

Expiry is watched, not computed: another owner's lease counts as expired
once snapfs has read it unchanged for its ttl (+ 2 s + 1 %) on its own
monotonic clock, whatever the document's wall-clock expires says."""

import json
import threading
import time

from snapfs_test import upload as uh

uh.require_fuse()


def put_lease(s3, bucket, coll, owner, token, expires, ttl=60):
    doc = {"owner": owner, "token": token, "expires": expires, "acquired_at": uh.now() - 30,
           "ttl": ttl}
    s3.put_object(Bucket=bucket, Key=f"{uh.PREFIX}{coll}/lease.json", Body=json.dumps(doc).encode())


def test_stale_lease_is_taken_over_with_the_next_token(make_s3fs, s3, bucket, tmp_path):
    # Written 100 s ago by a host gone since: nothing renews it, so after
    # watching it for its ttl (5 s) snapfs takes it over.
    put_lease(s3, bucket, "c", "dead-host/4242/0badc0ffee00", 7, uh.now() - 100, ttl=5)
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    fs.wait_upload(c, sid)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid and p["generation"] == 1
    assert p["lease_token"] == 8, p
    uh.check_pointer_target(s3, bucket, p, tmp_path)
    lease, _ = uh.lease(s3, bucket, c)
    assert lease["token"] == 8 and lease["expires"] == 0  # released, token kept
    assert lease["owner"].startswith("h1/")
    # Every later takeover (of the released lease) increments it again.
    sid2 = fs.publish(c)
    fs.wait_upload(c, sid2)
    p2, _ = uh.pointer(s3, bucket, c)
    assert p2["lease_token"] == 9 and p2["generation"] == 2
    assert uh.lease(s3, bucket, c)[0]["token"] == 9


def test_live_lease_of_another_host_blocks_the_pointer_until_it_expires(make_s3fs, s3, bucket,
                                                                      tmp_path):
    expires = uh.now() + 12
    put_lease(s3, bucket, "c", "someone-else", 3, expires, ttl=12)
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)

    # The objects are uploaded (before the lease is needed), the pointer is not written.
    u = uh.wait_for(
        lambda: (lambda u: u if u["lease"].startswith("held by someone-else until") else False)(
            fs.upload(c)), 60, "status: lease held by someone-else")
    assert u["state"] == "swapping"
    assert u["last_uploaded_id"] == sid
    assert "lease held by someone-else" in u["last_error"] and "pointer not written" in u["last_error"]
    assert uh.pointer(s3, bucket, c) == (None, None)
    lease, _ = uh.lease(s3, bucket, c)
    assert lease["owner"] == "someone-else" and lease["token"] == 3  # untouched
    while uh.now() < expires - 1:
        assert uh.pointer(s3, bucket, c) == (None, None), "pointer written under a live lease"
        time.sleep(0.5)

    # After it expires, snapfs takes it over (token 4) and writes the pointer.
    u = fs.wait_upload(c, sid, timeout=60)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid and p["lease_token"] == 4 and p["generation"] == 1
    assert p["written_at"] >= expires
    assert u["lease"] == "free" and u["last_error"] is None
    uh.check_pointer_target(s3, bucket, p, tmp_path)
    assert "held by someone-else" in fs.log_text()


def test_a_lease_that_is_not_a_lease_document_is_reported(make_s3fs, s3, bucket):
    s3.put_object(Bucket=bucket, Key=f"{uh.PREFIX}c/lease.json", Body=b"not json at all")
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    u = uh.wait_for(
        lambda: (lambda u: u if u["state"] == "failed" and u["last_error"] else False)(fs.upload(c)),
        60, "upload failed on the lease")
    assert "not a lease document" in u["last_error"] and "lease.json" in u["last_error"], u
    assert uh.pointer(s3, bucket, c) == (None, None)
    assert s3.get_object(Bucket=bucket, Key=f"{uh.PREFIX}c/lease.json")["Body"].read() == b"not json at all"
    # Once an operator removes it, the retry goes through.
    s3.delete_object(Bucket=bucket, Key=f"{uh.PREFIX}c/lease.json")
    fs.wait_upload(c, sid, timeout=90)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid and p["lease_token"] == 1


def test_a_lease_kept_alive_by_a_host_whose_clock_is_behind_is_never_taken(make_s3fs, s3, bucket):
    # The holder's clock is 10 minutes behind ours: every expires it writes
    # is long past by our clock. It renews every 3 s (ttl 15 s), so the
    # lease is live, and snapfs must not take it, however stale expires looks.
    stop = threading.Event()

    def renew():
        while not stop.is_set():
            put_lease(s3, bucket, "c", "slow-clock-host/1/aaaa", 3, uh.now() - 600 + 15, ttl=15)
            stop.wait(3)

    t = threading.Thread(target=renew, daemon=True)
    t.start()
    try:
        fs = make_s3fs(bucket)
        c = fs.mkcoll("c")
        sid = fs.publish(c)
        uh.wait_for(lambda: fs.upload(c)["lease"].startswith("held by slow-clock-host"), 60,
                    "status: lease held by slow-clock-host")
        # Two ttls and more: the pointer stays unwritten, the lease untouched.
        end = uh.now() + 35
        while uh.now() < end:
            assert uh.pointer(s3, bucket, c) == (None, None), "pointer written under a live lease"
            lease, _ = uh.lease(s3, bucket, c)
            assert lease["owner"] == "slow-clock-host/1/aaaa" and lease["token"] == 3, lease
            time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    # Once it stops renewing, snapfs watches it for its ttl and takes it over.
    fs.wait_upload(c, sid, timeout=60)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid and p["lease_token"] == 4
