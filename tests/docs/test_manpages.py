"""The man pages against the programs: each tool's -h lists exactly the
commands and options its man page documents (and snapfs -h exactly the
-o options of snapfs(8)), so that neither can gain or lose one alone.
Runs the built binaries' -h only: no FUSE, no network."""

import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(REPO, "man")
WITH_S3 = os.environ.get("SNAPFS_WITH_S3", "1") == "1"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def help_text(env_name):
    binary = os.environ.get(env_name)
    if not binary:
        pytest.fail(f"{env_name} is not set (meson sets it)")
    p = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, f"{binary} -h exited {p.returncode}: {p.stderr}"
    return p.stdout


def roff_text(line):
    """The text of one roff line: macro name, quotes and font changes gone."""
    line = re.sub(r"^\.[A-Z]{1,2}\s*", "", line)
    line = re.sub(r"\\f[BIRP]", "", line).replace("\\-", "-").replace("\\&", "").replace('"', "")
    return line


def sections(page):
    """{".SH name": [lines]} and the same for each .SS inside it, as "SH/SS"."""
    out, sh, ss = {}, None, None
    with open(os.path.join(MAN, page)) as f:
        for line in f.read().splitlines():
            if line.startswith(".SH "):
                sh, ss = line[4:].strip('"'), None
                continue
            if line.startswith(".SS "):
                ss = line[4:].strip('"')
                continue
            if sh:
                out.setdefault(sh, []).append(line)
                if ss:
                    out.setdefault(f"{sh}/{ss}", []).append(line)
    return out


def tags(lines):
    """The tag lines of the .TP paragraphs (what each entry documents)."""
    return [roff_text(lines[i + 1]) for i, l in enumerate(lines) if l == ".TP" and i + 1 < len(lines)]


def test_snapfs_s3_help_matches_its_man_page():
    if not WITH_S3:
        pytest.skip("snapfs-s3 is not built with -Ds3=disabled")
    out = help_text("SNAPFS_S3_BIN")
    help_cmds = set(re.findall(r"^  ([a-z][a-z-]*)(?= )", out.split("options:")[0], re.M))
    help_opts = set(OPTION.findall(out))
    man = sections("snapfs-s3.1")
    man_cmds = {t.split()[0] for t in tags(man["COMMANDS"])}
    man_opts = set()
    for t in tags(man["OPTIONS"]):
        man_opts |= set(OPTION.findall(t))
    assert help_cmds == {"put", "get", "download", "head", "rm", "rm-prefix", "ls", "upload", "uploads", "abort"}
    assert man_cmds == help_cmds, f"-h only: {help_cmds - man_cmds}, man only: {man_cmds - help_cmds}"
    assert man_opts == help_opts, f"-h only: {help_opts - man_opts}, man only: {man_opts - help_opts}"


def test_snapfs_ctl_help_matches_its_man_page():
    out = help_text("SNAPFS_CTL_BIN")
    assert ("built without S3" in out) != WITH_S3, out
    out = "\n".join(l for l in out.splitlines() if "built without S3" not in l)
    help_cmds = set(re.findall(r"^([a-z]+) {2,}", out, re.M))
    help_opts = set(OPTION.findall(out)) | {"-h", "--help"}
    man = sections("snapfs-ctl.1")
    man_cmds = {t.split()[0] for t in tags(man["COMMANDS"])}
    man_opts = set()
    for t in tags(man["OPTIONS"]):
        man_opts |= set(OPTION.findall(t))
    synopsis = {t.split()[1] for t in map(roff_text, man["SYNOPSIS"]) if t.startswith("snapfs-ctl ")}
    assert help_cmds == {"verify", "restore", "pointer", "ls", "sweep", "repair", "cluster"}, out
    assert man_cmds == help_cmds, f"-h only: {help_cmds - man_cmds}, man only: {man_cmds - help_cmds}"
    assert synopsis - {"-h"} == help_cmds, synopsis
    assert man_opts == help_opts, f"-h only: {help_opts - man_opts}, man only: {man_opts - help_opts}"


def _o_names(text):
    """The -o option names in text ("batch_delay", "group_access", ...)."""
    names = set()
    for m in re.finditer(r"-o ([a-z_0-9|=,.]+)", text):
        for opt in m.group(1).split(","):
            names.add(opt.split("=")[0])
    names.discard("")
    return names


def test_snapfs_help_matches_its_man_page():
    out = help_text("SNAPFS_BIN").split("FUSE options:")[0]
    man = sections("snapfs.8")
    documented = set()
    for t in tags(man["OPTIONS"]):
        if "..." not in t:  # "-o allow_other, -o allow_root, ...": libfuse's, in its part of -h
            documented |= _o_names(t)
    ours = _o_names(out)
    if WITH_S3:
        assert ours == documented, f"-h only: {ours - documented}, man only: {documented - ours}"
    else:
        s3 = {n for n in documented if n.startswith("s3_")}
        assert s3 and ours == documented - s3, f"-h: {ours}, man without s3_*: {documented - s3}"
        assert "not in this build" in out, out
