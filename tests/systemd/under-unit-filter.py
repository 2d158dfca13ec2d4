#!/usr/bin/python3
"""Runs a command under the system call rules the ebats units set, without systemd.

The test machines have no systemd as PID 1, so the daemons cannot be started
under their units there. This installs, for the command and everything it
starts, the two seccomp filters those units make systemd install:

  SystemCallFilter=@system-service  with  SystemCallErrorNumber=EPERM
      every system call outside the set (expanded from the unit's own
      SystemCallFilter= line by systemd-analyze syscall-filter) fails with EPERM;
  MemoryDenyWriteExecute=yes
      mmap with PROT_WRITE and PROT_EXEC, mprotect/pkey_mprotect with
      PROT_EXEC, and shmat with SHM_EXEC fail with EPERM;

and then execs the command. The rest of the sandbox (mount namespaces, the
ebats user, capabilities) is not reproduced.

  tests/systemd/under-unit-filter.py --unit systemd/ebats-ntask-worker@.service -- COMMAND [ARGS...]

Needs python3-seccomp (Debian's /usr/bin/python3); exits 77 without it.
"""
import argparse
import errno
import mmap
import os
import re
import subprocess
import sys

try:
    import seccomp
except ImportError:
    print("under-unit-filter: python3-seccomp is not installed (apt-get install python3-seccomp): skipped",
          file=sys.stderr)
    sys.exit(77)  # ctest's SKIP_RETURN_CODE


def syscall_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                         capture_output=True, text=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith(" ") and s.startswith("@"):
            current = groups.setdefault(s, [])
        elif current is not None:
            current.append(s)
    return groups


def expand(names, groups):
    out = set()
    for n in names:
        out |= expand(groups[n], groups) if n.startswith("@") else {n}
    return out


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(\w+)=(.*)$", line.strip())
            if m:
                settings.setdefault(m.group(1), []).append(m.group(2))
    return settings


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unit", required=True, help="the unit file whose rules to apply")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command given")

    settings = unit_settings(a.unit)
    filters = [w for line in settings.get("SystemCallFilter", []) for w in line.split()]
    if not filters or any(f.startswith("~") for f in filters):
        sys.exit(f"{a.unit}: expected an allow-list SystemCallFilter=, found {filters}")
    if settings.get("SystemCallErrorNumber", [""])[-1] != "EPERM":
        sys.exit(f"{a.unit}: expected SystemCallErrorNumber=EPERM")
    allowed = expand(filters, syscall_groups())

    allow_list = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    known = 0
    for name in sorted(allowed):
        try:
            allow_list.add_rule(seccomp.ALLOW, name)
            known += 1
        except (RuntimeError, ValueError):
            pass  # not a system call of this architecture (e.g. a 32-bit one)
    rules = [f"SystemCallFilter={' '.join(filters)} ({known} calls)"]

    mdwe = None
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        mdwe = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        mdwe.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
        for name in ("mprotect", "pkey_mprotect"):
            mdwe.add_rule(seccomp.ERRNO(errno.EPERM), name,
                          seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC))
        shm_exec = 0o100000
        mdwe.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, shm_exec, shm_exec))
        rules.append("MemoryDenyWriteExecute=yes")

    print(f"under-unit-filter: {os.path.basename(a.unit)}: {', '.join(rules)}", file=sys.stderr, flush=True)
    # The allow-list forbids seccomp() itself: it goes last.
    if mdwe is not None:
        mdwe.load()
    allow_list.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
