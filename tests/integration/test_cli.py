"""The command line: -h, -V, bad options and unusable STOREs are refused
with exit status 1, a message naming what and why, and nothing mounted."""

import os
import re
import subprocess

import pytest

from snapfs_test.harness import SNAPFS_BIN, run


def snapfs(*args, timeout=20):
    """Runs snapfs expecting it to return (-h, -V, or a refusal). One that
    mounts and stays in the foreground instead is killed, its mount
    detached, and the test fails."""
    try:
        return run([SNAPFS_BIN, *args], check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        for a in args:
            if os.path.ismount(a):
                run(["fusermount3", "-u", "-z", a], check=False)
        raise AssertionError(f"snapfs {' '.join(args)} did not exit within {timeout}s (it mounted?)")


def test_help_lists_our_options_then_libfuse(tmp_path):
    p = snapfs("-h")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    for opt in ("batch_delay=", "batch_max=", "keep=", "max_delta_size=", "loglevel="):
        assert opt in out, f"-h does not mention {opt}:\n{out}"
    # libfuse's own help (fuse_cmdline_help / fuse_lowlevel_help)
    assert "allow_other" in out and "max_idle_threads" in out, f"-h lacks libfuse's options:\n{out}"


def test_version_prints_ours_and_libfuse():
    p = snapfs("-V")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"^snapfs version \d+\.\d+\.\d+", out, re.M), out
    assert re.search(r"(FUSE library|libfuse)[^\n]*\b3\.\d+", out), f"no libfuse library version:\n{out}"


@pytest.mark.parametrize("opt, word", [
    ("keep=0", "keep"),
    ("keep=many", "keep"),
    ("batch_delay=soon", "batch_delay"),
    ("batch_max=-3", "batch_max"),
    ("max_delta_size=12X", "max_delta_size"),
    ("loglevel=loud", "loglevel"),
    ("read_path=fast", "read_path=fast: use auto, cache or passthrough"),
    ("read_path=cache,passthrough", "contradicts -o passthrough"),
    ("no_such_option", "no_such_option"),
])
def test_bad_option_refused(tmp_path, opt, word):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    p = snapfs(str(store), str(mnt), "-f", "-o", opt)
    assert p.returncode == 1, f"-o {opt}: exit {p.returncode}\n{p.stderr}"
    assert word in p.stderr, f"-o {opt}: stderr does not name {word!r}: {p.stderr!r}"
    assert not os.path.ismount(mnt)


def test_missing_mountpoint_argument_refused(tmp_path):
    p = snapfs(str(tmp_path / "store"))
    assert p.returncode != 0
    assert p.stderr.strip(), "no message on stderr"


def test_foreign_store_refused(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    store.mkdir()
    mnt.mkdir()
    (store / "thesis.tex").write_text("mine\n")
    p = snapfs(str(store), str(mnt), "-f")
    assert p.returncode == 1, p.stderr
    assert str(store) in p.stderr, p.stderr
    assert re.search(r"belongs to something else|not a snapfs store", p.stderr), p.stderr
    assert not os.path.ismount(mnt)
    assert sorted(os.listdir(store)) == ["thesis.tex"], "snapfs wrote into a foreign directory"


def test_newer_store_format_refused(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    store.mkdir()
    mnt.mkdir()
    (store / "SNAPFS-STORE").write_text("snapfs-store\nformat 99\n")
    (store / "collections").mkdir()
    p = snapfs(str(store), str(mnt), "-f")
    assert p.returncode == 1, p.stderr
    assert str(store) in p.stderr and re.search(r"format|newer", p.stderr, re.I), p.stderr
    assert not os.path.ismount(mnt)
    assert (store / "SNAPFS-STORE").read_text() == "snapfs-store\nformat 99\n"


def test_store_that_is_a_file_refused(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    store.write_text("not a directory\n")
    mnt.mkdir()
    p = snapfs(str(store), str(mnt), "-f")
    assert p.returncode == 1, p.stderr
    assert str(store) in p.stderr, p.stderr
    assert not os.path.ismount(mnt)


def test_locked_store_refused(make_fs, tmp_path):
    fs = make_fs()
    fs.mkcoll("c")
    other = tmp_path / "other-mnt"
    other.mkdir()
    p = snapfs(fs.store, str(other), "-f")
    assert p.returncode == 1, p.stderr
    assert fs.store in p.stderr and re.search(r"mounted|lock|in use|busy", p.stderr, re.I), p.stderr
    assert not os.path.ismount(other)
    # the first mount is unharmed
    assert fs.status("c")["collection"] == "c"


def test_missing_store_created(make_fs):
    fs = make_fs(start=False)
    assert not os.path.exists(fs.store)
    fs.start()
    with open(os.path.join(fs.store, "SNAPFS-STORE")) as f:
        assert f.read().startswith("snapfs-store\n")
    assert fs.status()["collections"] == {}


def test_empty_directory_adopted(make_fs):
    fs = make_fs(start=False)
    os.mkdir(fs.store)
    fs.start()
    assert os.path.exists(os.path.join(fs.store, "SNAPFS-STORE"))


def test_fstab_only_options_accepted_and_dropped(make_fs):
    fs = make_fs(opts=("auto", "noauto", "user", "nouser", "users", "_netdev", "defaults", "keep=20",
                       "batch_delay=50"))
    fs.mkcoll("c")
    assert fs.status("c")["state"] in ("idle", "merging", "sealing")


def test_standard_fuse_option_passes_through(make_fs):
    fs = make_fs(opts=("allow_other", "batch_delay=50"))
    with open("/proc/self/mountinfo") as f:
        line = next(l for l in f if f" {fs.mnt} " in l)
    assert "allow_other" in line, line


S3_OPTIONS = ("s3_bucket=b", "s3_prefix=p/", "s3_endpoint=http://127.0.0.1:9", "s3_region=r",
              "s3_profile=p", "s3_part_size=16M", "s3_parallel=4", "s3_upload=off",
              "s3_lease_ttl=60", "s3_host_id=h", "s3_keep=4", "s3_grace=10m", "s3_cluster=on",
              "s3_role=compactor", "s3_poll=1s")


@pytest.mark.parametrize("opt", S3_OPTIONS)
def test_s3_option_refused_with_its_reason_never_unknown(tmp_path, opt):
    """With S3 built in, s3_bucket= without credentials is refused for
    that, and any other S3 option without s3_bucket= as such; built with
    -Ds3=disabled, every one is refused as not in this build. Never
    "unknown option", never a mount, never a STORE."""
    with_s3 = os.environ.get("SNAPFS_WITH_S3", "1") == "1"
    store, mnt, home = tmp_path / "store", tmp_path / "mnt", tmp_path / "home"
    mnt.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)  # no ~/.aws: no credentials anywhere
    p = run([SNAPFS_BIN, str(store), str(mnt), "-f", "-o", opt], check=False, timeout=20, env=env)
    assert p.returncode == 1, f"-o {opt}: exit {p.returncode}\n{p.stderr}"
    if with_s3 and opt.startswith("s3_bucket="):
        assert "credentials" in p.stderr, p.stderr
    elif with_s3:
        assert "without s3_bucket" in p.stderr, p.stderr
    else:
        assert opt in p.stderr and "built without S3" in p.stderr, p.stderr
    assert "unknown option" not in p.stderr, p.stderr
    assert not os.path.ismount(mnt)
    assert not os.path.exists(store)


def test_help_says_whether_s3_is_built_in():
    out = snapfs("-h").stdout
    if os.environ.get("SNAPFS_WITH_S3", "1") == "1":
        assert "-o s3_bucket=NAME" in out, out
    else:
        assert "s3_bucket" not in out and "not in this build" in out, out
