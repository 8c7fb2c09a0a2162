"""Collections are directories: mkdir creates one (valid names only),
rmdir removes only an empty one, and they survive a restart. Nothing
else at the top level is writable."""

import errno
import os

import pytest

from snapfs_test.harness import assert_readonly, make_delta, wait_for

GOOD_NAMES = ["c", "lines", "Words_2", "a-b_c", "9lives", "x" * 64]
BAD_NAMES = ["-dash", "_under", ".dot", "a.b", "a b", "caf\u00e9", "x" * 65, "a$b", "a:b", "a\\b"]


def test_mkdir_creates_collection(fs):
    for n in GOOD_NAMES:
        fs.mkcoll(n)
    assert sorted(n for n in os.listdir(fs.mnt) if n != ".snapfs") == sorted(GOOD_NAMES)
    for n in GOOD_NAMES:
        entries = set(os.listdir(fs.path(n)))
        assert {"incoming", "snapshots", "rejected", "status"} <= entries, entries
        assert "latest" not in entries, "latest exists before the first snapshot"
        assert os.listdir(fs.path(n, "snapshots")) == []
        st = fs.status(n)
        assert st["collection"] == n
        assert st["state"] == "idle" and st["queued"] == 0 and st["snapshots"] == 0
        assert st["last_snapshot"] is None and st["last_error"] is None
    assert set(fs.status()["collections"]) == set(GOOD_NAMES)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_mkdir_bad_name_is_einval(fs, name):
    with pytest.raises(OSError) as e:
        os.mkdir(fs.path(name))
    assert e.value.errno == errno.EINVAL, e.value
    assert name not in os.listdir(fs.mnt)
    assert fs.status()["collections"] == {}


def test_mkdir_existing_is_eexist(fs):
    fs.mkcoll("c")
    with pytest.raises(FileExistsError):
        os.mkdir(fs.path("c"))


def test_rmdir_empty_collection(fs):
    fs.mkcoll("c")
    os.rmdir(fs.path("c"))
    assert "c" not in os.listdir(fs.mnt)
    assert "c" not in fs.status()["collections"]
    assert not os.path.exists(fs.store_path("c"))
    fs.mkcoll("c")  # the name can be used again


def test_rmdir_with_snapshot_is_enotempty(fs, tmp_path):
    fs.mkcoll("c")
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=[(1, "a")])
    fs.submit("c", src)
    fs.wait_applied("c", [sha])
    with pytest.raises(OSError) as e:
        os.rmdir(fs.path("c"))
    assert e.value.errno == errno.ENOTEMPTY
    assert fs.query("c", "SELECT body FROM items") == [("a",)]


def test_rmdir_with_queued_delta_is_enotempty(make_fs, tmp_path):
    fs = make_fs(opts=("batch_delay=5000",))
    fs.mkcoll("c")
    src = str(tmp_path / "d.db")
    sha = make_delta(src, rows=[(1, "a")])
    fs.submit("c", src)
    wait_for(lambda: fs.status("c")["queued"] == 1, 10, "the delta to be queued")
    assert fs.latest_id("c") is None
    with pytest.raises(OSError) as e:
        os.rmdir(fs.path("c"))
    assert e.value.errno == errno.ENOTEMPTY
    fs.wait_applied("c", [sha])


def test_collections_survive_restart(fs):
    for n in ("lines", "words", "gone"):
        fs.mkcoll(n)
    os.rmdir(fs.path("gone"))
    fs.unmount()
    fs.start()
    assert sorted(n for n in os.listdir(fs.mnt) if n != ".snapfs") == ["lines", "words"]
    assert set(fs.status()["collections"]) == {"lines", "words"}


def test_top_level_is_not_writable(fs):
    fs.mkcoll("c")
    top = fs.mnt

    def create():
        with open(os.path.join(top, "file"), "w"):
            pass
    assert_readonly(create, "create a file at the top level")
    assert_readonly(lambda: os.symlink("c", os.path.join(top, "link")), "symlink at the top level")
    assert_readonly(lambda: os.rename(fs.path("c"), fs.path("d")), "rename a collection")
    assert_readonly(lambda: os.chmod(fs.path("c"), 0o700), "chmod a collection")
    assert_readonly(lambda: open(fs.path(".snapfs", "status"), "w"), "write .snapfs/status")
    assert_readonly(lambda: os.unlink(fs.path(".snapfs", "status")), "unlink .snapfs/status")
    with pytest.raises(OSError):
        os.rmdir(fs.path(".snapfs"))
    with pytest.raises(OSError):
        os.mkdir(fs.path(".snapfs", "x"))
    assert os.path.isdir(fs.path(".snapfs"))
    assert sorted(os.listdir(top)) == [".snapfs", "c"]


def test_inside_collection_only_incoming_is_writable(fs):
    fs.mkcoll("c")
    assert_readonly(lambda: os.mkdir(fs.path("c", "extra")), "mkdir in a collection")
    assert_readonly(lambda: open(fs.path("c", "file"), "w"), "create a file in a collection")
    assert_readonly(lambda: os.rmdir(fs.path("c", "incoming")), "rmdir incoming/")
    assert_readonly(lambda: open(fs.path("c", "status"), "w"), "write status")
    assert_readonly(lambda: open(fs.path("c", "snapshots", "x"), "w"), "create in snapshots/")
    assert_readonly(lambda: os.mkdir(fs.path("c", "snapshots", "00000001")), "mkdir in snapshots/")
    assert_readonly(lambda: open(fs.path("c", "rejected", "x"), "w"), "create in rejected/")
    assert_readonly(lambda: os.symlink("snapshots/00000001", fs.path("c", "latest")), "make latest")
