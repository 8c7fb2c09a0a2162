"""The systemd unit snapfs@.service, run as systemd would run it.

There is no systemd as PID 1 here, so the test does systemd's part
itself: it reads the unit (the one meson configured, SNAPFS_UNIT, else
the source template), expands it for one instance (specifiers,
Environment=, EnvironmentFile=, $VAR and ${VAR}, $$), owns the
NOTIFY_SOCKET, runs ExecStart, and requires READY=1 to come only once
the mount is up and usable; then runs ExecStop (with MAINPID) and
requires the daemon to exit 0, the mount to go, and STOPPING=1. The
unit names the installed binary (PREFIX/sbin/snapfs); until it is
installed the test runs the one just built in its place, and says so.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from snapfs_test.harness import REPO, SNAPFS_BIN, Snapfs, in_mount_table, run, wait_for

UNIT_SOURCE = os.path.join(REPO, "src", "mount", "snapfs@.service.in")


# ---------------------------------------------------------------- the unit

def unit_text():
    """The configured unit if meson made one, else the source template
    with its two substitutions made here."""
    path = os.environ.get("SNAPFS_UNIT")
    if path:
        with open(path) as f:
            return f.read()
    with open(UNIT_SOURCE) as f:
        text = f.read()
    return (text.replace("@SBINDIR@", "/usr/local/sbin")
            .replace("@FUSERMOUNT3@", shutil.which("fusermount3") or "/usr/bin/fusermount3"))


def parse_unit(text):
    """{section: [(key, value), ...]} as systemd reads a unit file."""
    sections, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(.+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
            continue
        key, _, value = line.partition("=")
        assert cur is not None and _, f"not a unit line: {line!r}"
        cur.append((key.strip(), value.strip()))
    return sections


def escape_path(path):
    """systemd-escape --path."""
    path = re.sub(r"/+", "/", path).strip("/")
    if not path:
        return "-"
    out = []
    for i, b in enumerate(path.encode()):
        c = chr(b)
        if c == "/":
            out.append("-")
        elif (c.isascii() and (c.isalnum() or c in ":_.")) and not (c == "." and i == 0):
            out.append(c)
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def unescape(s):
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  s.encode()).decode()


def specifiers(value, instance):
    """%i %I %f %n %N %p %% (the ones a template like ours may use)."""
    unit = f"snapfs@{instance}.service"
    table = {"i": instance, "I": unescape(instance.replace("-", "/")),
             "f": "/" + unescape(instance.replace("-", "/")), "n": unit, "N": unit[:-8], "p": "snapfs",
             "%": "%"}

    def one(m):
        assert m.group(1) in table, f"specifier %{m.group(1)} not handled by this test: {value!r}"
        return table[m.group(1)]
    return re.sub(r"%(.)", one, value)


def split_words(value):
    """A command line split into words as systemd does: quotes group,
    backslash escapes inside double quotes and outside quotes."""
    words, i, n = [], 0, len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            break
        word, quoted = "", False
        while i < n and value[i] not in " \t":
            c = value[i]
            if c in "'\"":
                quoted = True
                end = value.index(c, i + 1)
                part = value[i + 1:end]
                word += part if c == "'" else re.sub(r"\\(.)", r"\1", part)
                i = end + 1
            elif c == "\\" and i + 1 < n:
                word += value[i + 1]
                i += 2
            else:
                word += c
                i += 1
        words.append((word, quoted))
    return words


def expand_command(value, env):
    """(ignore_failure, argv) of an Exec*= line: its prefixes, then
    $VAR (a word of its own, split on white space), ${VAR} (anywhere, one
    word) and $$ (a dollar sign)."""
    ignore = False
    while value and value[0] in "-@+!:":
        assert value[0] == "-", f"prefix {value[0]!r} not handled by this test"
        ignore = True
        value = value[1:]
    argv = []
    for word, quoted in split_words(value):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m and not quoted:
            argv += env.get(m.group(1), "").split()
            continue
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)
        argv.append(word.replace("$$", "$"))
    return ignore, argv


def read_env_assignments(value):
    """Environment=A=1 "B=two words" ..."""
    return dict(w.split("=", 1) for w, _ in split_words(value))


def read_env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[key.strip()] = value
    return out


class Instance:
    """One instance of the unit, expanded. /etc is redirected to etc_root
    (the test writes the instance's EnvironmentFile there)."""

    def __init__(self, mountpoint, etc_root):
        self.instance = escape_path(mountpoint)
        sections = parse_unit(unit_text())
        self.unit, self.service = dict(sections["Unit"]), sections["Service"]
        self.install = dict(sections["Install"])
        self.env = {}
        for key, value in self.service:
            value = specifiers(value, self.instance)
            if key == "Environment":
                self.env.update(read_env_assignments(value))
            elif key == "EnvironmentFile":
                optional = value.startswith("-")
                path = value.lstrip("-")
                assert path.startswith("/etc/"), f"EnvironmentFile outside /etc: {path}"
                local = os.path.join(etc_root, path[len("/etc/"):])
                if os.path.exists(local) or not optional:
                    self.env.update(read_env_file(local))
        self.settings = {k: specifiers(v, self.instance) for k, v in self.service}
        self.substituted = None

    def command(self, key):
        ignore, argv = expand_command(self.settings[key], self.env)
        if argv[0].endswith("/snapfs") and not os.path.exists(argv[0]):
            self.substituted = argv[0]  # not installed: the built binary instead
            argv[0] = SNAPFS_BIN
        return ignore, argv


def bind_notify(tmp_path, abstract):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@snapfs-test-{os.getpid()}-{time.monotonic_ns()}"
        s.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        s.bind(name)
    return s, name


def receive(sock, proc, want, timeout, log):
    """Every datagram until one carries the assignment want; fails at once
    if proc exits first."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(0.05)
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            if proc.poll() is not None and want != "STOPPING=1":
                raise AssertionError(f"snapfs exited {proc.returncode} before {want}; got {got}:\n"
                                     + open(log).read())
            continue
        got.append(msg)
        if want in msg.split("\n"):
            return msg
    raise AssertionError(f"no {want} within {timeout}s; got {got}:\n" + open(log).read())


def start(inst, fs, sock, sock_name):
    """ExecStart as systemd runs it (its environment, NOTIFY_SOCKET, no
    terminal, the output in a log file that fs scans at teardown), until
    READY=1. Returns (proc, log, the READY=1 datagram)."""
    _, argv = inst.command("ExecStart")
    log = os.path.join(fs.workdir, f"snapfs-{len(fs.logs) + 1}.log")
    env = dict(os.environ, **inst.env, NOTIFY_SOCKET=sock_name)
    with open(log, "wb") as lf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env)
    fs.proc = proc
    fs.logs.append(log)
    return proc, log, receive(sock, proc, "READY=1", 30, log)


def stop(inst, proc, cmds=("ExecStop", "ExecStopPost")):
    """ExecStop, then ExecStopPost, with MAINPID as systemd sets it. The
    daemon is reaped meanwhile, as systemd reaps it: ExecStop waits for
    MAINPID to be gone, and a zombie is not gone."""
    env = dict(os.environ, **inst.env)
    if proc.poll() is None:
        env["MAINPID"] = str(proc.pid)
    for key in cmds:
        ignore, argv = inst.command(key)
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.02)
        if p.poll() is None:
            p.kill()
            raise AssertionError(f"{key} {argv} did not return within 60 s")
        err = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        assert ignore or p.returncode == 0, f"{key} {argv} exited {p.returncode}: {err}"


@pytest.fixture
def unit_fs(tmp_path):
    """(Instance, harness.Snapfs on its STORE and mount point); the
    Snapfs's teardown scans the daemon's logs and unmounts what is left."""
    mnt = tmp_path / "srv" / "snap-fs"  # a dash, escaped as \x2d in the instance name
    mnt.mkdir(parents=True)
    etc = tmp_path / "etc"
    inst0 = Instance(str(mnt), str(etc))
    conf = etc / "snapfs" / f"{inst0.instance}.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"# test instance\nSTORE={tmp_path / 'store'}\nOPTS=batch_delay=50,keep=5\n")
    inst = Instance(str(mnt), str(etc))
    fs = Snapfs(tmp_path, store=inst.env["STORE"], mnt=str(mnt))
    yield inst, fs
    fs.close()


def test_unit_is_a_notify_template_that_restarts_and_unmounts():
    sections = parse_unit(unit_text())
    service = dict(sections["Service"])
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert "RestartSec" in service and "TimeoutStopSec" in service and "KillMode" in service
    assert "fusermount3 -u" in service["ExecStop"] and "MAINPID" in service["ExecStop"]
    assert "%f" in service["ExecStart"] and " -f " in service["ExecStart"] + " "
    assert "WantedBy" in dict(sections["Install"])
    inst = Instance("/srv/snapfs", "/nonexistent")
    assert inst.instance == "srv-snapfs"
    assert inst.command("ExecStart")[1][1:] == ["/var/lib/snapfs/srv-snapfs", "/srv/snapfs", "-f",
                                                 "-o", "defaults"]


def test_escaping_agrees_with_systemd_escape(tmp_path):
    tool = shutil.which("systemd-escape")
    if tool is None:
        pytest.skip("systemd-escape not installed (the escaping is checked by the other tests)")
    for path in ("/srv/snapfs", "/srv/snap-fs", str(tmp_path / "a b.c"), "/srv/.hidden/x"):
        want = run([tool, "--path", path]).stdout.strip()
        assert escape_path(path) == want, path
        assert specifiers("%f", want) == os.path.normpath(path), want


@pytest.mark.parametrize("abstract", [False, True], ids=["path-socket", "abstract-socket"])
def test_unit_start_ready_use_stop(unit_fs, tmp_path, abstract):
    inst, fs = unit_fs
    sock, name = bind_notify(tmp_path, abstract)
    with sock:
        proc, log, ready = start(inst, fs, sock, name)
        # READY=1 means served: no polling for the mount
        assert os.path.ismount(fs.mnt), f"READY=1 before the mount was up ({ready!r})"
        assert any(l.startswith("STATUS=") for l in ready.split("\n")), ready
        fs.use("lines", tmp_path, "hello")
        assert os.path.isdir(os.path.join(inst.env["STORE"], "collections", "lines"))

        t0 = time.monotonic()
        stop(inst, proc)
        assert proc.poll() == 0, f"snapfs exited {proc.poll()} after ExecStop:\n" + open(log).read()
        assert time.monotonic() - t0 < 10, "ExecStop took longer than snapfs needs"
        assert not in_mount_table(fs.mnt)
        receive(sock, proc, "STOPPING=1", 5, log)
    if inst.substituted:
        print(f"the unit names {inst.substituted} (not installed): ran {SNAPFS_BIN} in its place")


def test_unit_restart_after_a_crash(unit_fs, tmp_path):
    """Restart=on-failure: after kill -9, ExecStopPost detaches the dead
    mount so that ExecStart mounts again, and READY=1 comes only once
    the collections are recovered (their snapshots are there)."""
    inst, fs = unit_fs
    sock, name = bind_notify(tmp_path, False)
    with sock:
        proc, log, _ = start(inst, fs, sock, name)
        fs.use("c", tmp_path, "kept")
        sid = fs.latest_id("c")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert in_mount_table(fs.mnt), "the kernel should keep the dead mount"
        stop(inst, proc, cmds=("ExecStopPost",))  # what systemd runs after a crash
        assert not in_mount_table(fs.mnt), "ExecStopPost left the dead mount"

        proc, log, _ = start(inst, fs, sock, name)
        assert fs.latest_id("c") == sid
        assert fs.query("c", "SELECT body FROM items") == [("kept",)]
        stop(inst, proc)
        assert proc.poll() == 0, open(log).read()
        receive(sock, proc, "STOPPING=1", 5, log)
    assert not in_mount_table(fs.mnt)


def test_unit_stop_when_the_mount_is_busy(unit_fs, tmp_path):
    """A shell cd'd into the mount makes fusermount3 -u fail (EBUSY):
    ExecStop then sends SIGTERM, snapfs detaches the mount and exits 0,
    and the stop still completes."""
    inst, fs = unit_fs
    sock, name = bind_notify(tmp_path, False)
    with sock:
        proc, log, _ = start(inst, fs, sock, name)
        fs.mkcoll("c")
        holder = subprocess.Popen(["sleep", "60"], cwd=fs.path("c"))
        try:
            stop(inst, proc)
            assert proc.poll() == 0, open(log).read()
            receive(sock, proc, "STOPPING=1", 5, log)
            wait_for(lambda: not in_mount_table(fs.mnt), 10, "the busy mount to be detached")
        finally:
            holder.kill()
            holder.wait()


def test_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify on the unit, for one instance, works without
    systemd running. The installed binary is the built one here, and the
    man page the one in man/."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed: the unit was not verified by systemd")
    text = re.sub(r"^ExecStart=\S+/snapfs ", f"ExecStart={SNAPFS_BIN} ", unit_text(), flags=re.M)
    unit = tmp_path / "snapfs@srv-snapfs.service"
    unit.write_text(text)
    man8 = tmp_path / "man" / "man8"
    man8.mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "man", "snapfs.8"), man8)
    p = run([tool, "verify", str(unit)], check=False, env=dict(os.environ, MANPATH=str(tmp_path / "man")))
    assert p.returncode == 0 and not p.stderr.strip(), f"systemd-analyze verify:\n{p.stdout}{p.stderr}"
