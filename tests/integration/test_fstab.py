"""The /etc/fstab line of snapfs(8) and the README, mounted for real.

mount(8) runs mount.fuse3 with a PATH of its own
(/usr/local/sbin:/usr/local/bin:/usr/sbin:...), so a line in an fstab
mounts only an installed snapfs. The test therefore works in a mount
namespace of its own (a forked child, unshare(CLONE_NEWNS)), where the
built snapfs is bind-mounted over /usr/local/sbin, where meson install
puts it: nothing outside the child sees the mount or the bind mount.
There it runs `mount --fstab FILE MOUNTPOINT` on the documented line
(its STORE and mount point moved to a temporary directory, its type and
options as documented), uses the mount, and unmounts it with umount(8).
"""

import ctypes
import os
import re
import shutil
import subprocess
import traceback

import pytest

from snapfs_test.harness import REPO, SNAPFS_BIN, Snapfs, in_mount_table, run, wait_for

CLONE_NEWNS = 0x00020000


def documented_lines():
    """The fstab lines in snapfs(8) and README.md."""
    pat = re.compile(r"^(\S+)\s+(\S+)\s+(fuse\.snapfs)\s+(\S+)\s+(\d)\s+(\d)\s*$")
    out = {}
    for name in ("man/snapfs.8", "README.md"):
        with open(os.path.join(REPO, name)) as f:
            out[name] = [line.strip() for line in f if pat.match(line.strip())]
    return out, pat


def test_fstab_line_is_the_same_in_the_man_page_and_the_readme():
    lines, _ = documented_lines()
    assert len(lines["man/snapfs.8"]) == 1, lines
    assert lines["README.md"] == lines["man/snapfs.8"], lines


def in_private_mount_namespace(fn):
    """Runs fn() in a forked child with a mount namespace of its own;
    fails with the child's traceback if fn raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        code = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNS) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"unshare(CLONE_NEWNS): {os.strerror(e)}")
            subprocess.run(["mount", "--make-rprivate", "/"], check=True)
            fn()
            code = 0
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"in the mount namespace:\n{report}"


def test_fstab_line_mounts_through_mount_fuse3(tmp_path):
    for tool in ("mount", "umount", "findmnt"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing (util-linux, mount)")
    assert shutil.which("mount.fuse3") or os.path.exists("/sbin/mount.fuse3"), \
        "mount.fuse3 missing (package fuse3)"
    lines, pat = documented_lines()
    source, target, fstype, options, freq, passno = pat.match(lines["man/snapfs.8"][0]).groups()
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# {source} {target} moved here\n"
                     f"{store}  {mnt}  {fstype}  {options}  {freq} {passno}\n")
    # libmount parses it as an fstab, and finds nothing wrong but the type
    # the kernel cannot tell (FUSE subtypes never can)
    p = run(["findmnt", "--verify", "--tab-file", str(fstab)], check=False)
    assert re.search(r"\b0 parse errors, 0 errors\b", p.stdout + p.stderr), p.stdout + p.stderr
    p = run(["findmnt", "--tab-file", str(fstab), "-n", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS"])
    assert p.stdout.split() == [str(store), str(mnt), fstype, options], p.stdout

    sbin = tmp_path / "sbin"
    sbin.mkdir()
    os.symlink(os.path.abspath(SNAPFS_BIN), sbin / "snapfs")
    work = tmp_path / "work"
    work.mkdir()

    def mount_and_use():
        subprocess.run(["mount", "--bind", str(sbin), "/usr/local/sbin"], check=True)
        p = run(["mount", "--fstab", str(fstab), str(mnt)], check=False, timeout=60)
        assert p.returncode == 0, f"mount --fstab: exit {p.returncode}: {p.stderr}"
        # snapfs daemonized and mount returned: the mount is ready
        assert in_mount_table(str(mnt))
        with open("/proc/self/mountinfo") as f:
            line = next(l for l in f if l.split()[4] == str(mnt))
        assert " - fuse.snapfs " in line, line
        Snapfs(work, store=str(store), mnt=str(mnt)).use("lines", work, "from fstab")
        with open(store / ".lock") as f:
            pid = int(f.read())
        run(["umount", str(mnt)])
        assert not in_mount_table(str(mnt))

        def gone():  # a daemon is not our child: whoever reaps it may take a moment
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        wait_for(gone, 30, f"snapfs (pid {pid}) to exit after umount")

    in_private_mount_namespace(mount_and_use)
    assert not in_mount_table(str(mnt)), "the mount leaked out of the namespace"
