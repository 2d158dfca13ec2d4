#!/usr/bin/env python3
"""Measurement and statistics helper of bench/run.sh (plain Python 3, stdlib only).

Each subcommand prints one JSON object on stdout (except `summarize`, which
prints a table and writes docs/benchmarks.md); run.sh collects them per run.

  machine   --dir DIR                      machine description + fsync latency of DIR
  publish   --ctl BIN --config F --event E --input FILE
                                           runs `ebatsctl publish E --jsonl < FILE`, times it
  wait      --file F --count N --timeout S (--t0-ns T [--pid NAME=PID ...] | --start-fifo P)
                                           polls results file F until it has N lines; seconds
                                           since T; CPU seconds of each PID and its children.
                                           With --start-fifo it creates P.ready once Python is
                                           up, then reads "T NAME=PID ..." from the FIFO P: its
                                           own start-up stays out of the timed window
  verify    --file F (--db DB | --stats S) --task T --expect N
                                           exactly N ok results of task T, distinct ids, queue
                                           empty, no dead letters (file and database or stats)
  lateness  --file F --task T --expect N [--record R]
                                           started_at - due_at of task T: min/p50/p99/max ms
  pickup    --ctl BIN --config F --event E --file F --rate R --count N [--library SO | --producer BIN]
            [--record R]               events published one at a time (one `ebatsctl publish`
                                           each, with --library by the Python client kept open, with
                                           --producer by pickup_producer, the C API kept open):
                                           started_at - due_at of their tasks
  retry-gap --file F --task T --expect N --delay-ms D [--record R]
                                           tasks run twice (attempt 0 asks for a retry after D
                                           ms): attempt 1's start - attempt 0's end - D
  backlog   --bin DIR --config F --state DIR --queued N --delayed N --events N --events-input FILE
            --series CSV               W1 on a database holding N queued and N delayed tasks, then the
                                           drain of the queued ones: rates, RSS, sizes over time, and
                                           `ebatsctl stats` timed on the full database
  summarize --runs-dir D --machine M --doc PATH --command CMD
                                           medians and ranges over runs, marks: the SQLite
                                           section of the document
  summarize-rabbitmq --runs-dir D --machine M --envelope E --idle I --doc PATH --command CMD
                                           the same for bench/run_rabbitmq.sh: the RabbitMQ
                                           section

`wait` also takes --delta-pid NAME=PID (CPU of a process that ran before the window,
counted from the start line: the RabbitMQ VM) and --allow-short (report instead of failing
on timeout); it notes when the first line appears. `verify` takes --db (SQLite) or --stats
(the output of `ebatsctl stats --json`, for RabbitMQ). docs/benchmarks.md has one section per
command between BEGIN/END comments; each summarize rewrites only its own (write_section).
"""
import argparse
import collections
import datetime
import json
import math
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import time

MARK_TASKS_PER_S = 20000
MARK_P99_MS = 50
# Issue 11's marks (performance at scale), each a ratio or a latency measured in the same run.
MARK_LIMIT_B_RATIO = 0.9          # W1 (or W1R) end to end ≥ 0.9 of limit B
MARK_PICKUP_P99_MS = 2.0          # publish → handler start, p99
MARK_W2_P99_MS = 2.0              # delayed-task lateness p99
MARK_RSS_MIB = 22e6 / (1 << 20)   # 22 MB: a tenth of Celery prefork's ≈ 220 MB
MARK_BACKLOG_RATIO = 0.8          # W1 with the backlog within 20 % of W1 on an empty database
CLK_TCK = os.sysconf("SC_CLK_TCK")


def fail(msg):
    print("bench_tool: " + msg, file=sys.stderr)
    sys.exit(1)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def read_records(path):
    records = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                fail("%s:%d: not a JSON object (%s); is the results file written by something else?" % (path, n, e))
    return records


# ------------------------------------------------------------------ machine

def fsync_latency_ms(folder, n=100):
    path = os.path.join(folder, ".bench-fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        block = b"x" * 4096
        for _ in range(n):
            os.write(fd, block)
            t = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"p50": round(percentile(times, 50), 3), "p90": round(percentile(times, 90), 3)}


def cmd_machine(args):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    fs = subprocess.run(["df", "--output=fstype,source", args.dir], capture_output=True, text=True)
    fs_lines = fs.stdout.strip().splitlines()
    sqlite_cli = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()
    out = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024.0 / 1024.0, 1),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "") if hasattr(platform, "freedesktop_os_release") else "",
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg_at_start": round(os.getloadavg()[0], 2),
        "state_dir": args.dir,
        "filesystem": " ".join(fs_lines[-1].split()) if fs_lines else "unknown",
        "fsync_4k_ms": fsync_latency_ms(args.dir),
        "sqlite": sqlite_cli[0] if sqlite_cli else "unknown",
    }
    print(json.dumps(out))


# ------------------------------------------------------------------ publish

def cmd_publish(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(args.input, "rb") as stdin:
        t0 = time.perf_counter()
        proc = subprocess.run([args.ctl, "--config", args.config, "publish", args.event, "--jsonl"], stdin=stdin,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        fail("ebatsctl publish %s --jsonl < %s exited %d:\n%s" % (args.event, args.input, proc.returncode,
                                                                    proc.stderr))
    try:
        count = int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        fail("ebatsctl publish printed %r on stdout; expected the number of events" % proc.stdout)
    print(json.dumps({
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "ebatsctl_says": proc.stderr.strip(),
    }))


# ------------------------------------------------------------------ wait

def load_runs(runs_dir):
    """The per-run JSON files (run-N.json) of a bench command, in run order: run-2 before run-10."""
    def run_number(name):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    names = sorted((n for n in os.listdir(runs_dir) if n.startswith("run-") and n.endswith(".json")), key=run_number)
    if not names:
        fail("no run-*.json in " + runs_dir)
    return [json.load(open(os.path.join(runs_dir, n))) for n in names]


def cpu_seconds(pid):
    """The CPU time of a live process, all its threads, in seconds (None if it is gone).

    utime + stime of /proc/PID/stat are whole clock ticks (10 ms), each rounded down: a single
    reading of a process started inside the window (ebats' daemons) lost 5-10 ms that way, a
    tenth of a worker's CPU in W1. The run time of each live thread (/proc/PID/task/*/schedstat,
    nanoseconds) has no such loss but leaves out threads that have exited, which /proc/PID/stat
    keeps. Both are lower bounds of the same sum; the larger is taken."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = (int(fields[11]) + int(fields[12])) / CLK_TCK
    live_ns = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    live_ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended meanwhile: /proc/PID/stat has it
    except OSError:
        return ticks
    return max(ticks, live_ns / 1e9)


def proc_kib(pid, name, key):
    """A "Key:  N kB" line of /proc/PID/NAME (status, smaps_rollup), in KiB (None if the process is gone)."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kib(pid):
    """VmHWM of a live process (its peak resident set so far), in KiB (None if it is gone)."""
    return proc_kib(pid, "status", "VmHWM")


def pss_kib(pid):
    """Pss of a live process (its resident pages, each shared one divided among the processes that map it),
    in KiB (None if it is gone): summed over processes, shared libraries count once."""
    return proc_kib(pid, "smaps_rollup", "Pss")


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def read_start_line(fifo):
    """Signals readiness with FIFO.ready, then blocks until run.sh writes "T0_NS NAME=PID ..."."""
    with open(fifo + ".ready", "w"):
        pass
    with open(fifo) as f:
        words = f.readline().split()
    if not words:
        fail("%s: no start line (expected \"T0_NS NAME=PID ...\")" % fifo)
    return int(words[0]), words[1:]


def cmd_wait(args):
    if args.start_fifo:
        args.t0_ns, args.pid = read_start_line(args.start_fifo)
    elif args.t0_ns is None:
        fail("wait needs --t0-ns or --start-fifo")
    # --delta-pid: processes that ran before the window (the RabbitMQ VM); their
    # CPU is counted from now (the start line, or the start of this command).
    deltas = []
    for spec in args.delta_pid or []:
        name, pid = spec.split("=", 1)
        deltas.append((name, int(pid), cpu_seconds(int(pid))))
    deadline = time.time() + args.timeout
    lines = 0
    offset = 0
    first_ns = None
    first_cpu = {}
    complete = True
    while True:
        try:
            with open(args.file, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            lines += chunk.count(b"\n")
        except FileNotFoundError:
            pass
        if lines > 0 and first_ns is None:
            first_ns = time.time_ns()
            for name, pid, base in deltas:
                now = cpu_seconds(pid)
                first_cpu[name] = None if now is None or base is None else round(now - base, 6)
            for spec in args.pid or []:
                name, pid = spec.split("=", 1)
                first_cpu[name] = cpu_seconds(int(pid))
                kids = children_of(int(pid))
                if kids:
                    first_cpu[name + "_children"] = sum(c for c in (cpu_seconds(k) for k in kids) if c is not None)
        if lines >= args.count:
            break
        if time.time() > deadline:
            if not args.allow_short:
                fail("timed out after %.0fs: %s has %d lines, waiting for %d; see the daemon logs next to it" %
                     (args.timeout, args.file, lines, args.count))
            complete = False
            break
        time.sleep(0.005)
    end_ns = time.time_ns()
    seconds = (end_ns - args.t0_ns) / 1e9
    cpu = {}
    for spec in args.pid or []:
        name, pid = spec.split("=", 1)
        pid = int(pid)
        cpu[name] = cpu_seconds(pid)
        kids = children_of(pid)
        if kids:
            cpu[name + "_children"] = sum(c for c in (cpu_seconds(k) for k in kids) if c is not None)
            cpu[name + "_children_n"] = len(kids)
    for name, pid, base in deltas:
        now = cpu_seconds(pid)
        cpu[name] = None if now is None or base is None else round(now - base, 6)
    rss = {}
    for spec in args.pid or []:
        name, pid = spec.split("=", 1)
        rss[name] = peak_rss_kib(int(pid))
        kids = [k for k in (peak_rss_kib(c) for c in children_of(int(pid))) if k is not None]
        if kids:
            rss[name + "_children"] = kids
    pss = {}
    for spec in args.pid or []:
        name, pid = spec.split("=", 1)
        pss[name] = pss_kib(int(pid))
        kids = [k for k in (pss_kib(c) for c in children_of(int(pid))) if k is not None]
        if kids:
            pss[name + "_children"] = kids
    out = {"lines": lines, "seconds": seconds, "cpu_s": cpu}
    if rss:
        out["peak_rss_kib"] = rss
        out["end_pss_kib"] = pss
    if first_ns is not None:
        # Both ends are seen by the same 5 ms poll, so their errors are alike.
        out["first_seconds"] = (first_ns - args.t0_ns) / 1e9
        out["from_first_seconds"] = (end_ns - first_ns) / 1e9
        if first_cpu:
            out["cpu_at_first_s"] = first_cpu
    if args.allow_short:
        out["complete"] = complete
    print(json.dumps(out))


# ------------------------------------------------------------------ verify

def stats_problems(path):
    """Problems in the output of `ebatsctl stats --json` taken after a run: anything left
    pending, delayed or dead (the RabbitMQ broker has no database to look into)."""
    with open(path) as f:
        rows = json.load(f)
    left = {}
    for r in rows:
        name = r.get("topic") or r.get("row") or "?"
        for key in ("pending", "delayed", "leased", "dead"):
            if r.get(key):
                left["%s.%s" % (name, key)] = r[key]
    return left, (["not empty afterwards (ebatsctl stats): %s" % ", ".join("%s %d" % kv for kv in sorted(left.items()))]
                  if left else [])


def cmd_verify(args):
    records = [r for r in read_records(args.file) if r.get("task") == args.task]
    statuses = collections.Counter(r.get("status") for r in records)
    ids = collections.Counter(r.get("task_id") for r in records)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    out = {
        "results": len(records),
        "distinct_ids": len(ids),
        "ok": statuses.get("ok", 0),
        "not_ok": len(records) - statuses.get("ok", 0),
        "lost": max(0, args.expect - len(ids)),
        "duplicates": duplicates,
        # A task whose only result has attempt > 0 ran once but was charged for an
        # earlier delivery (RabbitMQ: x-delivery-count).
        "attempt_above_0": sum(1 for r in records if r.get("attempt", 0) > 0),
    }
    problems = []
    if args.db:
        db = sqlite3.connect("file:%s?mode=ro" % args.db, uri=True, timeout=10)
        try:
            out["db_results"] = db.execute("SELECT count(*), count(DISTINCT task_id) FROM results WHERE task = ?",
                                           (args.task,)).fetchone()
            out["db_tasks_left"] = db.execute("SELECT count(*) FROM tasks").fetchone()[0]
            out["db_events_left"] = db.execute("SELECT count(*) FROM events").fetchone()[0]
            out["db_dead_letters"] = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        finally:
            db.close()
    if args.stats:
        out["left_afterwards"], more = stats_problems(args.stats)
        problems += more
    if out["lost"] or out["duplicates"] or out["results"] != args.expect:
        problems.append("%d results for %d distinct tasks (expected %d): %d lost, %d duplicated" %
                        (out["results"], out["distinct_ids"], args.expect, out["lost"], out["duplicates"]))
    if out["not_ok"]:
        problems.append("%d results are not ok: %s" % (out["not_ok"], dict(statuses)))
    if args.db and list(out["db_results"]) != [args.expect, args.expect]:
        problems.append("the database's results table has %d rows for %d distinct tasks, expected %d" %
                        (out["db_results"][0], out["db_results"][1], args.expect))
    if args.db and (out["db_tasks_left"] or out["db_events_left"] or out["db_dead_letters"]):
        problems.append("queue not empty afterwards: %d tasks, %d events, %d dead letters left in %s" %
                        (out["db_tasks_left"], out["db_events_left"], out["db_dead_letters"], args.db))
    out["exact"] = not problems
    out["problems"] = problems
    print(json.dumps(out))


# ------------------------------------------------------------------ lateness

def read_executions(path, task):
    """Lines "<id> <attempt> <task>" of the bench plugin's record file for `task`."""
    try:
        with open(path) as f:
            lines = [l.split() for l in f if l.strip()]
    except FileNotFoundError:
        return []
    return [l for l in lines if len(l) < 3 or l[2] == task]


def cmd_lateness(args):
    records = [r for r in read_records(args.file) if r.get("task") == args.task]
    if not records:
        fail("no results of task %s in %s" % (args.task, args.file))
    missing = [r for r in records if "due_at" not in r]
    if missing:
        fail("%d of %d result records in %s have no due_at field; this ebats does not report it yet" %
             (len(missing), len(records), args.file))
    late = sorted(r["started_at"] - r["due_at"] for r in records)
    ids = collections.Counter(r["task_id"] for r in records)
    out = {
        "results": len(records),
        "distinct_ids": len(ids),
        "ok": sum(1 for r in records if r.get("status") == "ok"),
        "early": sum(1 for x in late if x < 0),
        "min": late[0],
        "p50": percentile(late, 50),
        "p99": percentile(late, 99),
        "max": late[-1],
        "mean": statistics.fmean(late),
        "values": late,  # for the lateness plot (bench/run.sh)
    }
    out["attempt_above_0"] = sum(1 for r in records if r.get("attempt", 0) > 0)
    if args.record:
        # "<id> <attempt> <task>"; lines of other tasks (W3 of the RabbitMQ run) are not counted.
        lines = read_executions(args.record, args.task)
        rec_ids = collections.Counter(l[0] for l in lines)
        out["executions_recorded"] = len(lines)
        out["executions_distinct"] = len(rec_ids)
    out["exact"] = (out["results"] == args.expect and out["distinct_ids"] == args.expect and
                    out["ok"] == args.expect and
                    (not args.record or (out["executions_recorded"] == args.expect and
                                         out["executions_distinct"] == args.expect)))
    print(json.dumps(out))


# ------------------------------------------------------------------ pickup

def ctl_publisher(args):
    """Publishes one event with one `ebatsctl publish` process."""
    def publish(params):
        text = json.dumps(params)
        proc = subprocess.run([args.ctl, "--config", args.config, "publish", args.event, text],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            fail("ebatsctl publish %s %s exited %d:\n%s" % (args.event, text, proc.returncode, proc.stderr))
    return publish, lambda: None


def library_publisher(args):
    """Publishes one event with the Python client (clients/python) on a publisher kept open, as a
    long-running producer (a web application) does; args.library is libebats.so."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
    import ebats  # noqa: E402 (the repository's client, found only now)
    publisher = ebats.Publisher(args.config, library=args.library)
    return (lambda params: publisher.publish(args.event, params)), publisher.close


def c_producer_times(args, via):
    """Runs pickup_producer (bench/pickup_producer.c), which publishes the events itself on the same
    schedule with the C API; its wall ns before and after each call, by event number."""
    proc = subprocess.run([args.producer, args.config, args.event, str(args.rate), str(args.count), via],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        fail("%s exited %d:\n%s" % (args.producer, proc.returncode, proc.stderr))
    lines = [l.split() for l in proc.stdout.splitlines()]
    if [int(l[0]) for l in lines] != list(range(args.count)):
        fail("%s printed %d lines, not events 0..%d in order" % (args.producer, len(lines), args.count - 1))
    return [int(l[1]) for l in lines], [int(l[2]) for l in lines]


def cmd_pickup(args):
    """Publishes COUNT events one at a time at RATE per second, on a fixed schedule, with the daemons
    running: one `ebatsctl publish` each, or with --library one call each on a publisher kept open;
    waits for their results and reports started_at - due_at (the task's due time is its event's
    publish time): how long a published event waits for its handler."""
    if not args.library and not args.ctl and not args.producer:
        fail("pickup needs --ctl (one ebatsctl per event), --library (the Python client) or --producer "
             "(pickup_producer, the C API)")
    via = "c" if args.producer else "library" if args.library else "ebatsctl"
    if args.producer:
        published_ns, returned_ns = c_producer_times(args, via)
    else:
        publish, close = library_publisher(args) if args.library else ctl_publisher(args)
        interval = 1.0 / args.rate
        published_ns, returned_ns = [], []
        t0 = time.perf_counter()
        for i in range(args.count):
            at = t0 + i * interval
            now = time.perf_counter()
            if at > now:
                time.sleep(at - now)
            published_ns.append(time.time_ns())
            publish({"pickup": args.rate, "via": via, "i": i})
            returned_ns.append(time.time_ns())
        close()
    deadline = time.time() + args.timeout
    while True:
        mine = [r for r in read_records(args.file)
                if isinstance(r.get("params"), dict) and r["params"].get("pickup") == args.rate
                and r["params"].get("via") == via]
        if len(mine) >= args.count or time.time() > deadline:
            break
        time.sleep(0.05)
    if len(mine) < args.count:
        fail("after %s s, %d of %d pickup results in %s" % (args.timeout, len(mine), args.count, args.file))
    waits = sorted(r["started_at"] - r["due_at"] for r in mine)
    out = {"rate_per_s": args.rate, "via": via, "events": args.count, "results": len(mine)}
    out.update(stats_of(waits))
    if args.record:
        # The handler's own CLOCK_REALTIME stamp (bench_stamp) against the time taken just before the
        # publish call: the same wait, to the microsecond (the records keep whole milliseconds).
        stamps = {l[0]: int(l[3]) for l in read_executions(args.record, "bench_stamp") if len(l) >= 4}
        # Split in two: the publish call itself (the event's durable commit, and with --ctl the process),
        # and from its return to the handler's stamp (the daemons' part; negative if the handler started
        # before the call had returned).
        precise, after_return = [], []
        for r in mine:
            stamp = stamps.get(r["task_id"])
            if stamp is None:
                fail("task %s of pickup event %d has a result but no bench_stamp line in %s" %
                     (r["task_id"], r["params"]["i"], args.record))
            i = r["params"]["i"]
            precise.append(round((stamp - published_ns[i]) / 1e6, 3))
            after_return.append(round((stamp - returned_ns[i]) / 1e6, 3))
        out["precise_ms"] = stats_of(precise)
        out["publish_call_ms"] = stats_of([round((b - a) / 1e6, 3) for a, b in zip(published_ns, returned_ns)])
        out["after_return_ms"] = stats_of(after_return)
    print(json.dumps(out))


# ------------------------------------------------------------------ backlog

def rss_kib(pid):
    """VmRSS of a live process, in KiB (0 if it is gone)."""
    return proc_kib(pid, "status", "VmRSS") or 0


def tree_rss_kib(pid):
    """VmRSS of a daemon plus its children's (a worker's child processes)."""
    return rss_kib(pid) + sum(rss_kib(c) for c in children_of(pid))


class LineCounter:
    """Counts the lines of a growing file, reading only what was added since the last call."""

    def __init__(self, path):
        self.path, self.offset, self.lines = path, 0, 0

    def __call__(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while True:
                    chunk = f.read(1 << 22)
                    if not chunk:
                        break
                    self.offset += len(chunk)
                    self.lines += chunk.count(b"\n")
        except FileNotFoundError:
            pass
        return self.lines


def timed_stats(ctl, config):
    """(wall ms of one `ebatsctl stats --json`, process start included; its rows)."""
    t0 = time.perf_counter()
    proc = subprocess.run([ctl, "--config", config, "stats", "--json"], capture_output=True, text=True)
    ms = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        fail("ebatsctl stats --json exited %d:\n%s" % (proc.returncode, proc.stderr))
    return ms, json.loads(proc.stdout)


def stat_of(rows, topic, key):
    return sum(r.get(key, 0) for r in rows if r.get("topic") == topic)


def run_fill(ctl, config, topic, task, count, delay):
    """`ebatsctl enqueue TOPIC TASK --jsonl [--delay D]` of COUNT params lines; its wall time."""
    cmd = [ctl, "--config", config, "enqueue", topic, task, "--jsonl"] + (["--delay", delay] if delay else [])
    data = b"".join(b'{"b":%d}\n' % i for i in range(count))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=data, capture_output=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), proc.returncode, proc.stderr.decode(errors="replace")))
    return {"tasks": count, "seconds": seconds, "per_s": count / seconds}


def file_mib(path):
    try:
        return os.path.getsize(path) / (1 << 20)
    except OSError:
        return 0.0


def cmd_backlog(args):
    """W1 again on a database that already holds --queued ready tasks (topic `backlog`, no worker yet) and
    --delayed tasks due in an hour (topic `bench`, with its dtask worker running), then the drain of the
    queued ones by a worker of their own. Samples throughput, RSS and file sizes every --every seconds
    into --series (CSV) and times `ebatsctl stats` on the full database."""
    ctl = os.path.join(args.bin, "ebatsctl")
    db = os.path.join(args.state, "ebats.db")
    results = os.path.join(args.state, "results.jsonl")
    out = {"queued": args.queued, "delayed": args.delayed, "events": args.events}
    out["fill_queued"] = run_fill(ctl, args.config, "backlog", "noop", args.queued, None)
    out["fill_delayed"] = run_fill(ctl, args.config, "bench", "noop", args.delayed, "1h")
    out["db_mib_after_fill"] = file_mib(db) + file_mib(db + "-wal")
    idle = [timed_stats(ctl, args.config) for _ in range(5)]
    rows = idle[-1][1]
    if stat_of(rows, "backlog", "pending") != args.queued or stat_of(rows, "bench", "delayed") != args.delayed:
        fail("after the fill, stats shows %d pending on topic backlog and %d delayed on bench; expected %d and %d" %
             (stat_of(rows, "backlog", "pending"), stat_of(rows, "bench", "delayed"), args.queued, args.delayed))
    out["stats_ms_idle"] = [round(ms, 1) for ms, _ in idle]

    with open(args.events_input, "rb") as stdin:
        t0 = time.perf_counter()
        proc = subprocess.run([ctl, "--config", args.config, "publish", "bench_noop", "--jsonl"], stdin=stdin,
                              capture_output=True, text=True)
        out["w1_publish_seconds"] = time.perf_counter() - t0
    if proc.returncode != 0:
        fail("ebatsctl publish bench_noop --jsonl exited %d:\n%s" % (proc.returncode, proc.stderr))

    daemons = {}
    logs = []

    def start(name, argv):
        log = open(os.path.join(args.state, name + ".log"), "wb")
        logs.append(log)
        daemons[name] = subprocess.Popen(argv, stderr=log, stdout=subprocess.DEVNULL)

    count = LineCounter(results)
    series = []
    stats_ms = []

    def sample(phase, t_start, done_before, last):
        now = time.perf_counter()
        done = count() - done_before
        rate = (done - last[1]) / (now - last[0]) if now > last[0] else 0.0
        row = {"phase": phase, "t": round(now - t_start, 3), "done": done, "rate": round(rate, 1),
               "db_mib": round(file_mib(db), 1), "wal_mib": round(file_mib(db + "-wal"), 1)}
        for name, p in daemons.items():
            row["rss_" + name] = round(tree_rss_kib(p.pid) / 1024, 1)
        series.append(row)
        return now, done

    try:
        t0 = time.perf_counter()
        start("scheduler", [os.path.join(args.bin, "ebats-scheduler"), "--config", args.config])
        start("ntask", [os.path.join(args.bin, "ebats-ntask-worker"), "--config", args.config, "--topic", "bench"])
        start("dtask", [os.path.join(args.bin, "ebats-dtask-worker"), "--config", args.config, "--topic", "bench"])
        deadline = time.time() + args.timeout
        while count() < args.events:
            if time.time() > deadline:
                fail("W1 with the backlog: %d of %d results after %d s" % (count(), args.events, args.timeout))
            time.sleep(0.005)
        out["w1_seconds"] = time.perf_counter() - t0
        out["w1_tasks_per_s"] = args.events / out["w1_seconds"]

        # The queued backlog, drained by a worker of its own while the others idle.
        t1 = time.perf_counter()
        start("backlog", [os.path.join(args.bin, "ebats-ntask-worker"), "--config", args.config, "--topic",
                          "backlog"])
        # The count is polled every 5 ms, so the end is seen within 5 ms; a row is
        # sampled every --every seconds, and one more at the end (a shorter interval).
        last = (t1, 0)
        next_sample = t1 + args.every
        next_stats = t1 + args.stats_every
        while count() - args.events < args.queued:
            now = time.perf_counter()
            if now >= next_sample:
                last = sample("drain", t1, args.events, last)
                next_sample += args.every
            if now >= next_stats:
                stats_ms.append(round(timed_stats(ctl, args.config)[0], 1))
                next_stats = time.perf_counter() + args.stats_every
            if time.time() > deadline + args.queued / 1000:
                fail("backlog drain: %d of %d results" % (count() - args.events, args.queued))
            time.sleep(0.005)
        sample("drain", t1, args.events, last)
        out["drain_seconds"] = series[-1]["t"]
        out["drain_tasks_per_s"] = args.queued / out["drain_seconds"]
        out["stats_ms_draining"] = stats_ms
        ms, rows = timed_stats(ctl, args.config)
        out["stats_ms_after"] = round(ms, 1)
        out["after"] = {"pending_backlog": stat_of(rows, "backlog", "pending"),
                        "pending_bench": stat_of(rows, "bench", "pending"),
                        "delayed_bench": stat_of(rows, "bench", "delayed"),
                        "dead": sum(r.get("dead", 0) for r in rows)}
        out["peak_rss_kib"] = {name: peak_rss_kib(p.pid) for name, p in daemons.items()}
    finally:
        for p in daemons.values():
            if p.poll() is None:
                p.terminate()
        for p in daemons.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()

    # Every result exactly once: W1's events and the queued backlog.
    ids = collections.Counter()
    with open(results, "rb") as f:
        for line in f:
            r = json.loads(line)
            if r.get("status") == "ok":
                ids[r["task_id"]] += 1
    out["results_ok"] = sum(ids.values())
    out["distinct_ids"] = len(ids)
    out["duplicates"] = sum(n - 1 for n in ids.values() if n > 1)
    out["lost"] = args.events + args.queued - len(ids)
    out["exact"] = (out["lost"] == 0 and out["duplicates"] == 0 and out["after"]["pending_backlog"] == 0 and
                    out["after"]["pending_bench"] == 0 and out["after"]["delayed_bench"] == args.delayed)
    # Throughput early and late in the drain (first and last tenth of the tasks).
    drain = [r for r in series if r["phase"] == "drain"]
    tenth = args.queued / 10

    def rate_between(lo, hi):
        pts = [r for r in drain if lo <= r["done"] <= hi]
        if len(pts) < 2 or pts[-1]["t"] <= pts[0]["t"]:
            return None
        return (pts[-1]["done"] - pts[0]["done"]) / (pts[-1]["t"] - pts[0]["t"])

    out["drain_rate_first_tenth"] = rate_between(0, tenth)
    out["drain_rate_last_tenth"] = rate_between(args.queued - tenth, args.queued)
    rss_cols = sorted({k for r in drain for k in r if k.startswith("rss_")})
    out["rss_mib_range"] = {k[4:]: [min(r[k] for r in drain), max(r[k] for r in drain)] for k in rss_cols}
    with open(args.series, "w") as f:
        cols = ["t", "done", "rate", "db_mib", "wal_mib"] + rss_cols
        f.write(" ".join(cols) + "\n")
        for r in drain:
            f.write(" ".join(str(r.get(c, 0)) for c in cols) + "\n")
    print(json.dumps(out))

# ------------------------------------------------------------------ retry gap

def stats_of(values):
    values = sorted(values)
    if not values:
        return {"min": None, "p50": None, "p99": None, "max": None}
    return {"min": values[0], "p50": percentile(values, 50), "p99": percentile(values, 99), "max": values[-1]}


def cmd_retry_gap(args):
    """Tasks that fail attempt 0 asking for a retry after --delay-ms and succeed on attempt 1:
    gap = attempt 1's started_at - attempt 0's finished_at - delay (ms)."""
    records = [r for r in read_records(args.file) if r.get("task") == args.task]
    by_id = collections.defaultdict(list)
    for r in records:
        by_id[r["task_id"]].append(r)
    gaps, due_late, wrong = [], [], []
    for tid, rs in by_id.items():
        shape = sorted((r.get("attempt"), r.get("status")) for r in rs)
        if shape != [(0, "retry"), (1, "ok")]:
            wrong.append({"task_id": tid, "results": shape})
            continue
        a = {r["attempt"]: r for r in rs}
        gaps.append(a[1]["started_at"] - a[0]["finished_at"] - args.delay_ms)
        due_late.append(a[1]["started_at"] - a[1]["due_at"])
    out = {
        "results": len(records),
        "tasks": len(by_id),
        "pairs": len(gaps),
        "missing_tasks": max(0, args.expect - len(by_id)),
        "wrong_shape": len(wrong),
        "wrong_examples": wrong[:3],
        "early": sum(1 for g in gaps if g < 0),
        "abs_max": max((abs(g) for g in gaps), default=None),
        "mean": statistics.fmean(gaps) if gaps else None,
        "attempt1_lateness": stats_of(due_late),  # started_at - due_at of attempt 1
    }
    out.update(stats_of(gaps))
    exact = len(records) == 2 * args.expect and len(gaps) == args.expect
    if args.record:
        lines = read_executions(args.record, args.task)
        per_id = collections.defaultdict(list)
        for l in lines:
            per_id[l[0]].append(l[1])
        out["executions_recorded"] = len(lines)
        out["tasks_executed"] = len(per_id)
        out["tasks_run_exactly_twice"] = sum(1 for v in per_id.values() if sorted(v) == ["0", "1"])
        exact = exact and out["tasks_run_exactly_twice"] == args.expect and len(lines) == 2 * args.expect
    out["exact"] = exact
    print(json.dumps(out))


# ------------------------------------------------------------------ summarize

# ------------------------------------------------------------------ the document

# docs/benchmarks.md holds one section per benchmark command, each between a
# BEGIN and an END comment; a command rewrites its own section only, keeping
# the others as they are, in this order.
DOC_SECTIONS = [("sqlite", "bench/run.sh"), ("rabbitmq", "bench/run.sh --broker rabbitmq")]
DOC_HEADER = """# Benchmarks

ebats has two broker backends, and a benchmark command for each: `bench/run.sh` (SQLite, the default
broker) and `bench/run.sh --broker rabbitmq`. Each command rewrites only its own section below (between
its `BEGIN` and `END` comments) and leaves the other alone, so the two sections may come from different
days: compare each with the physical-limit program measured in its own runs, not with the other section.
"""


def doc_sections(text):
    """{name: body} of the marked sections in a document's text."""
    found = {}
    for name, _ in DOC_SECTIONS:
        begin = re.search(r"^<!-- BEGIN %s\b.*-->\n" % name, text, re.M)
        end = re.search(r"^<!-- END %s -->$" % name, text, re.M)
        if begin and end and end.start() >= begin.end():
            found[name] = text[begin.end():end.start()].rstrip() + "\n"
    return found


def write_section(path, name, body):
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    sections = doc_sections(old)
    if old.strip() and not sections and name != "sqlite":
        sections["sqlite"] = old  # a file from before the sections: the SQLite benchmark's
    sections[name] = body.rstrip() + "\n"
    parts = [DOC_HEADER]
    for section, command in DOC_SECTIONS:
        if section in sections:
            parts.append("<!-- BEGIN %s: written by `%s`; edits inside are overwritten -->\n%s<!-- END %s -->\n" %
                         (section, command, sections[section], section))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(parts))
    os.replace(tmp, path)


def read_notes(path, part):
    """The part of bench/notes.md for one section ("sqlite": before the line that
    starts with `<!-- notes: rabbitmq`, "rabbitmq": after it), headings one level down."""
    if not path or not os.path.exists(path):
        return ""
    with open(path) as f:
        text = f.read()
    pieces = re.split(r"^<!-- notes: rabbitmq\b[^\n]*\n", text, maxsplit=1, flags=re.M)
    chosen = pieces[0] if part == "sqlite" else (pieces[1] if len(pieces) > 1 else "")
    return re.sub(r"^(#+) ", r"#\1 ", chosen.strip(), flags=re.M)


def fmt_int(x):
    return "{:,.0f}".format(x)


def fmt_ms(x):
    return "{:,.0f}".format(x) if float(x).is_integer() else "{:,.1f}".format(x)


def results_and_marks_tables(runs, rows, marks):
    """The Results table (median, range, every run) and the Marks table of a section, as markdown lines."""
    out = ["### Results (%d runs: median, range, every run)\n" % len(runs),
           "| metric | unit | median | range (min – max) | runs |",
           "|---|---|---:|---|---|"]
    for label, unit, median, rng, each in rows:
        out.append("| %s | %s | %s | %s | %s |" % (label, unit, median, rng, each))
    out += ["", "### Marks\n", "| mark | met? | measured |", "|---|---|---|"]
    for label, met, value in marks:
        out.append("| %s | %s | %s |" % (label, "**yes**" if met else "**no**", value))
    out.append("")
    return out


def cpu_table(heading, cpu_rows, value_format):
    """A "where the CPU goes" table: one row a process, its CPU seconds written with value_format."""
    out = [heading + "\n", "| process | CPU s |", "|---|---:|"]
    for label, v in cpu_rows:
        out.append(("| %s | " + value_format + " |") % (label, v))
    out.append("")
    return out


def finish_section(args, out, part, how_measured, title):
    """Appends the notes for `part` (bench/notes.md) and the how-it-is-measured text to the section's lines
    `out`, writes the section into args.doc and says so."""
    notes = read_notes(args.notes, part)
    if notes:
        out.append(notes + "\n")
    out.append("### How it is measured\n")
    out.append(how_measured)
    write_section(args.doc, part, "\n".join(out))
    print("wrote the %s section of %s" % (title, args.doc))


def pickup_rows(key, first, each):
    """Table rows for the pickup results under run key `key`: p50, p99 and max at 20/s, then at 100/s,
    in whole ms from the result records, then p50 and p99 to the µs from the handler's stamp;
    `first` labels the first row, `each` the others (% (statistic, rate))."""
    rows = []
    for rate in ("20", "100"):
        for stat in ("p50", "p99", "max"):
            label = first if not rows else each % (stat, rate)
            rows.append((label, "ms", lambda r, rate=rate, stat=stat: r[key][rate][stat], fmt_ms))
    for rate in ("20", "100"):
        for stat in ("p50", "p99"):
            rows.append(((each % (stat, rate)) + ", publish call → handler's own clock stamp", "ms",
                         lambda r, rate=rate, stat=stat: r[key][rate]["precise_ms"][stat], lambda v: "%.2f" % v))
    # The same wait in two parts: the publish call alone, and from its return to the handler's stamp
    # (what the daemons add). Runs from before 2026-12-08 have neither.
    for part, what in (("publish_call_ms", "the publish call alone"),
                       ("after_return_ms", "publish call's return → handler's own clock stamp")):
        for rate in ("20", "100"):
            rows.append(((each % ("p99", rate)) + ", " + what, "ms",
                         lambda r, rate=rate, part=part: r[key][rate].get(part, {}).get("p99"),
                         lambda v: "–" if v is None else "%.2f" % v))
    return rows


def cmd_summarize(args):
    machine = json.load(open(args.machine))
    runs = load_runs(args.runs_dir)

    def col(get):
        return [get(r) for r in runs]

    metrics = [
        # (label, unit, getter, formatter)
        ("events → results, end to end (W1)", "tasks/s", lambda r: r["w1"]["tasks_per_s"], fmt_int),
        ("W1 drain time (daemons start → 20,000th result)", "s", lambda r: r["w1"]["drain"]["seconds"],
         lambda x: "%.2f" % x),
        ("publish rate (`ebatsctl publish --jsonl`, no daemon running)", "events/s",
         lambda r: r["w1"]["publish"]["events_per_s"], fmt_int),
        ("delayed-task lateness p50 (W2)", "ms", lambda r: r["w2"]["lateness"]["p50"], fmt_ms),
        ("delayed-task lateness p99 (W2)", "ms", lambda r: r["w2"]["lateness"]["p99"], fmt_ms),
        ("delayed-task lateness min (W2)", "ms", lambda r: r["w2"]["lateness"]["min"], fmt_ms),
        ("delayed-task lateness max (W2)", "ms", lambda r: r["w2"]["lateness"]["max"], fmt_ms),
        *pickup_rows("pickup", "pickup p50, events published one at a time at 20/s (publish → handler start)",
                     "pickup %s, at %s/s"),
        *pickup_rows("pickup_library", "pickup p50, published by a long-running producer (Python client) at 20/s",
                     "pickup %s, long-running producer at %s/s"),
        ("peak RSS during W1: scheduler", "MiB", lambda r: r["w1"]["drain"]["peak_rss_kib"]["scheduler"] / 1024,
         lambda x: "%.1f" % x),
        ("peak RSS during W1: ntask worker parent", "MiB", lambda r: r["w1"]["drain"]["peak_rss_kib"]["ntask"] / 1024,
         lambda x: "%.1f" % x),
        ("peak RSS during W1: ntask worker children (the larger)", "MiB",
         lambda r: max(r["w1"]["drain"]["peak_rss_kib"]["ntask_children"]) / 1024, lambda x: "%.1f" % x),
        ("peak RSS during W1: the four processes together (each one's peak)", "MiB",
         lambda r: (r["w1"]["drain"]["peak_rss_kib"]["scheduler"] + r["w1"]["drain"]["peak_rss_kib"]["ntask"] +
                    sum(r["w1"]["drain"]["peak_rss_kib"]["ntask_children"])) / 1024, lambda x: "%.1f" % x),
        ("PSS at the end of W1: the four processes together (shared pages divided among their users)", "MiB",
         lambda r: (r["w1"]["drain"]["end_pss_kib"]["scheduler"] + r["w1"]["drain"]["end_pss_kib"]["ntask"] +
                    sum(r["w1"]["drain"]["end_pss_kib"]["ntask_children"])) / 1024, lambda x: "%.1f" % x),
        ("physical limit A: txns of 100, every commit fsynced (the issue's program)", "tasks/s",
         lambda r: r["limit"]["tasks_per_s"], fmt_int),
        ("physical limit B: txns of 1024, inserts fsynced, claims and settles not (ebats' batches and durability)",
         "tasks/s", lambda r: r["limit_like_ebats"]["tasks_per_s"], fmt_int),
        ("ratio end to end / limit A", "", lambda r: r["w1"]["tasks_per_s"] / r["limit"]["tasks_per_s"],
         lambda x: "%.2f" % x),
        ("ratio end to end / limit B", "", lambda r: r["w1"]["tasks_per_s"] / r["limit_like_ebats"]["tasks_per_s"],
         lambda x: "%.2f" % x),
        ("W1R: events → results with the worker routing (`route_events`, no scheduler)", "tasks/s",
         lambda r: r["w1_route"]["tasks_per_s"], fmt_int),
        ("ratio W1R / limit B", "", lambda r: r["w1_route"]["tasks_per_s"] / r["limit_like_ebats"]["tasks_per_s"],
         lambda x: "%.2f" % x),
        ("W1R: CPU of the worker parent and its children", "s",
         lambda r: r["w1_route"]["drain"]["cpu_s"]["ntask"] + r["w1_route"]["drain"]["cpu_s"]["ntask_children"],
         lambda x: "%.2f" % x),
        ("W1: CPU of the scheduler, the worker parent and its children", "s",
         lambda r: r["w1"]["drain"]["cpu_s"]["scheduler"] + r["w1"]["drain"]["cpu_s"]["ntask"] +
         r["w1"]["drain"]["cpu_s"]["ntask_children"], lambda x: "%.2f" % x),
        ("peak RSS during W1R: the three processes together (worker parent and children)", "MiB",
         lambda r: (r["w1_route"]["drain"]["peak_rss_kib"]["ntask"] +
                    sum(r["w1_route"]["drain"]["peak_rss_kib"]["ntask_children"])) / 1024, lambda x: "%.1f" % x),
        *pickup_rows("pickup_route", "pickup p50, long-running producer, the worker routing (no scheduler), at 20/s",
                     "pickup %s, long-running producer, the worker routing, at %s/s"),
        *pickup_rows("pickup_route_c", "pickup p50, C API producer (bench/pickup_producer.c), the worker routing, "
                     "at 20/s", "pickup %s, C API producer, the worker routing, at %s/s"),
        *[("physical limit: one event row per durable commit at %s/s (sqlite_limit --commit-rate), %s" % (rate, stat),
           "ms", lambda r, rate=rate, stat=stat: r.get("limit_commit", {}).get(rate, {}).get("commit_ms", {}).get(stat),
           lambda v: "–" if v is None else "%.2f" % v)
          for rate in ("20", "100") for stat in ("p50", "p99")],
    ]
    rows = []
    for label, unit, get, f in metrics:
        values = col(get)
        if any(v is None for v in values):  # a figure that runs from before it was measured lack
            rows.append((label, unit, "–", "", ", ".join("–" if v is None else f(v) for v in values)))
            continue
        rows.append((label, unit, f(statistics.median(values)), "%s – %s" % (f(min(values)), f(max(values))),
                     ", ".join(f(v) for v in values)))

    med_rate = statistics.median(col(lambda r: r["w1"]["tasks_per_s"]))
    med_p99 = statistics.median(col(lambda r: r["w2"]["lateness"]["p99"]))
    early = sum(col(lambda r: r["w2"]["lateness"]["early"]))
    min_late = min(col(lambda r: r["w2"]["lateness"]["min"]))
    lost = sum(col(lambda r: r["w1"]["verify"]["lost"] + r["w1_route"]["verify"]["lost"]))
    dups = sum(col(lambda r: r["w1"]["verify"]["duplicates"] + r["w1_route"]["verify"]["duplicates"]))
    exact_w1 = all(col(lambda r: r["w1"]["verify"]["exact"] and r["w1_route"]["verify"]["exact"]))
    exact_w2 = all(col(lambda r: r["w2"]["lateness"]["exact"]))
    marks = [
        ("≥ %s tasks/s end to end (median)" % fmt_int(MARK_TASKS_PER_S), med_rate >= MARK_TASKS_PER_S,
         "%s tasks/s" % fmt_int(med_rate)),
        ("lateness p99 ≤ %d ms (median)" % MARK_P99_MS, med_p99 <= MARK_P99_MS, "%s ms" % fmt_ms(med_p99)),
        ("never early (every delayed task in every run)", early == 0,
         "%d early; smallest lateness %s ms" % (early, fmt_ms(min_late))),
        ("0 lost, 0 duplicated (W1, W1R and W2, every run)", exact_w1 and exact_w2 and lost == 0 and dups == 0,
         "%d lost, %d duplicated" % (lost, dups)),
    ]
    # Issue 11's marks, from the same runs (medians of the per-run figures).
    limit_b = lambda r: r["limit_like_ebats"]["tasks_per_s"]  # noqa: E731
    for name, key in (("W1", "w1"), ("W1R (the worker routing)", "w1_route")):
        ratio = statistics.median(col(lambda r, key=key: r[key]["tasks_per_s"] / limit_b(r)))
        marks.append(("%s end to end ≥ %.1f of limit B (median of the per-run ratios)" % (name, MARK_LIMIT_B_RATIO),
                      ratio >= MARK_LIMIT_B_RATIO, "%.2f" % ratio))
    for name, get in (("W1's four processes", lambda r: r["w1"]["drain"]["peak_rss_kib"]["scheduler"] +
                       r["w1"]["drain"]["peak_rss_kib"]["ntask"] + sum(r["w1"]["drain"]["peak_rss_kib"]["ntask_children"])),
                      ("W1R's three processes", lambda r: r["w1_route"]["drain"]["peak_rss_kib"]["ntask"] +
                       sum(r["w1_route"]["drain"]["peak_rss_kib"]["ntask_children"]))):
        mib = statistics.median(col(get)) / 1024
        marks.append(("peak RSS of %s ≤ 22 MB (%.2f MiB; median of the per-run sums)" % (name, MARK_RSS_MIB),
                      mib <= MARK_RSS_MIB, "%.2f MiB" % mib))
    for key, who in (("pickup_route_c", "C API producer"), ("pickup_route", "Python client")):
        for rate in ("20", "100"):
            p99 = statistics.median(col(lambda r, key=key, rate=rate: r[key][rate]["precise_ms"]["p99"]))
            marks.append(("pickup p99 ≤ %g ms at %s/s, %s, the worker routing (publish call → handler's stamp; "
                          "median of the runs)" % (MARK_PICKUP_P99_MS, rate, who), p99 <= MARK_PICKUP_P99_MS,
                          "%.2f ms" % p99))
    marks.append(("delayed-task lateness p99 ≤ %g ms (W2, median)" % MARK_W2_P99_MS, med_p99 <= MARK_W2_P99_MS,
                  "%s ms" % fmt_ms(med_p99)))
    if args.backlog:
        backlog_ratio = json.load(open(args.backlog))["w1_tasks_per_s"] / med_rate
        marks.append(("W1 with the backlog ≥ %.1f of W1 on an empty database (the median above)" % MARK_BACKLOG_RATIO,
                      backlog_ratio >= MARK_BACKLOG_RATIO, "%.2f" % backlog_ratio))

    # Where the CPU went during W1 (medians).
    cpu_rows = []
    cpu_keys = [("scheduler", "ebats-scheduler"), ("ntask", "ebats-ntask-worker (parent)"),
                ("ntask_children", "ntask worker children (2)")]
    for key, label in cpu_keys:
        vals = [r["w1"]["drain"]["cpu_s"].get(key) for r in runs]
        vals = [v for v in vals if v is not None]
        if vals:
            cpu_rows.append((label, "%.2f" % statistics.median(vals)))
    cpu_rows.append(("ebatsctl publish (20,000 events)",
                     "%.2f" % statistics.median(col(lambda r: r["w1"]["publish"]["cpu_s"]))))

    # Console summary.
    print()
    print("%-62s %-9s %12s  %s" % ("metric (%d runs)" % len(runs), "unit", "median", "range"))
    for label, unit, med, rng, _ in rows:
        print("%-62s %-9s %12s  %s" % (label[:62], unit, med, rng))
    for label, met, value in marks:
        print("%-4s %s: %s" % ("MET" if met else "MISS", label, value))

    # The document.
    m = machine
    out = []
    out.append("## SQLite (the default broker)\n")
    out.append("Measured by `%s` on %s. This section is rewritten by every run of the command;"
               " the numbers below are real, from that run.\n" % (args.command, m["date"]))
    out.append("### Machine\n")
    out.append("| | |\n|---|---|")
    out.append("| CPU | %s, %d logical CPUs (`nproc`) |" % (m["cpu"], m["nproc"]))
    out.append("| memory | %.1f GiB |" % m["mem_gib"])
    out.append("| kernel / OS | Linux %s / %s |" % (m["kernel"], m["os"] or "?"))
    out.append("| state dir | `%s` on %s |" % (m["state_dir"], m["filesystem"]))
    out.append("| fsync of 4 KiB there | p50 %.2f ms, p90 %.2f ms |" % (m["fsync_4k_ms"]["p50"],
                                                                         m["fsync_4k_ms"]["p90"]))
    mode = runs[0]["limit"].get("synchronous", "full")
    out.append("| SQLite | %s, WAL, `synchronous: %s`%s |" % (
        m["sqlite"], mode, " (ebats' default: publishes fsynced, consumer progress not)" if mode == "full" else
        " (`broker.sqlite.synchronous: normal`, not the default: nothing fsynced)"))
    out.append("| load average (1 min) at the start / after each run | %.2f / %s |" % (
        m["loadavg_at_start"], ", ".join("%.2f" % r.get("loadavg", float("nan")) for r in runs)))
    out.append("")
    out.extend(results_and_marks_tables(runs, rows, marks))
    out.extend(cpu_table("### Where the CPU goes in W1 (median CPU seconds per run)", cpu_rows, "%s"))
    out.append("W1's wall time (median %.2f s) against these CPU seconds: a process whose CPU seconds approach the"
               " wall time is the bottleneck; if none does, the time goes to waiting (fsync of each commit, polling,"
               " handing tasks between processes).\n" % statistics.median(col(lambda r: r["w1"]["drain"]["seconds"])))
    if args.backlog:
        out.extend(backlog_lines(json.load(open(args.backlog)), statistics.median(col(lambda r: r["w1"]["tasks_per_s"])),
                                 args.plots))
    elif args.plots:
        out.append("![W2 lateness, every delayed task of every run](%s/bench-lateness.png)\n" % args.plots)
    finish_section(args, out, "sqlite", HOW_MEASURED, "SQLite")


def backlog_lines(b, w1_median, plots):
    """The backlog run's table (bench_tool.py backlog's JSON) for the SQLite section."""
    def pair(v):
        return "%.1f – %.1f" % (v[0], v[1])
    first, last = b.get("drain_rate_first_tenth"), b.get("drain_rate_last_tenth")
    rows = [
        ("filling: `ebatsctl enqueue backlog noop --jsonl`, %s ready tasks" % fmt_int(b["queued"]), "tasks/s",
         fmt_int(b["fill_queued"]["per_s"])),
        ("filling: `ebatsctl enqueue bench noop --jsonl --delay 1h`, %s delayed tasks" % fmt_int(b["delayed"]),
         "tasks/s", fmt_int(b["fill_delayed"]["per_s"])),
        ("database + WAL after the fill", "MiB", "%.0f" % b["db_mib_after_fill"]),
        ("`ebatsctl stats --json` on the full database, idle (5 calls, process start included)", "ms",
         ", ".join(fmt_ms(x) for x in b["stats_ms_idle"])),
        ("… while the backlog drains (every 2 s)", "ms",
         ("%s – %s" % (fmt_ms(min(b["stats_ms_draining"])), fmt_ms(max(b["stats_ms_draining"]))))
         if b["stats_ms_draining"] else "–"),
        ("W1 with the backlog in the database (scheduler, ntask and dtask worker of topic bench)", "tasks/s",
         fmt_int(b["w1_tasks_per_s"])),
        ("… ratio to W1 on an empty database (median of the runs above)", "", "%.2f" % (b["w1_tasks_per_s"] / w1_median)),
        ("drain of the %s queued tasks by their own ntask worker (2 children)" % fmt_int(b["queued"]), "tasks/s",
         fmt_int(b["drain_tasks_per_s"])),
        ("… in its first tenth / its last tenth", "tasks/s",
         "%s / %s" % (fmt_int(first) if first else "–", fmt_int(last) if last else "–")),
    ]
    for name, rng in sorted(b["rss_mib_range"].items()):
        rows.append(("RSS of the %s daemon with its children during the drain (min – max)" % name, "MiB", pair(rng)))
    rows.append(("lost / duplicated (W1 and the drain) / still queued", "",
                 "%d / %d / %d" % (b["lost"], b["duplicates"], b["after"]["pending_backlog"] + b["after"]["pending_bench"])))
    out = ["### Backlog: %s tasks queued and %s delayed (one run)\n" % (fmt_int(b["queued"]), fmt_int(b["delayed"])),
           "| metric | unit | value |", "|---|---|---:|"]
    out += ["| %s | %s | %s |" % r for r in rows]
    out.append("")
    if plots:
        out.append("![Backlog drain: tasks per second and RSS over time](%s/bench-backlog.png)\n" % plots)
        out.append("![W2 lateness, every delayed task of every run](%s/bench-lateness.png)\n" % plots)
    return out


HOW_MEASURED = """\
One run of `bench/run.sh` does, in a fresh state dir (a new SQLite database and results file):

1. **W1, throughput.** 20,000 params lines (`{"n":1}` …) are prepared, then published with
   `ebatsctl publish bench_noop --jsonl` while **no daemon runs** (publish rate = 20,000 / wall time of
   that command, process start included). The event `bench_noop` is registered to one task, `noop`
   (bench/noop_plugin.c: returns OK, does nothing). Then `ebats-scheduler` and
   `ebats-ntask-worker --topic bench` (`processes: 2`) are started, and the clock runs from just before
   their start until the results file holds 20,000 lines (the Python process that watches the file is
   started, and has finished its own start-up, before the clock starts; it polls every 5 ms):
   **events → results per second** = 20,000 / that time, so it includes daemon start-up, fan-out of every event into its task, claim, execution in a
   child process, result record and the acknowledgement of every batch but the last (the worker writes a
   batch's result lines just before its commit, so the last commit, about a millisecond, falls after the
   clock stops; sqlite_limit's clock stops after its last settle). Afterwards the results file and the database's
   `results` table must hold exactly 20,000 `ok` results for 20,000 distinct task ids, and the `tasks`,
   `events` and `dead_letters` tables must be empty (0 lost, 0 duplicated).
2. **W2, delayed-task lateness.** With the scheduler and ntask worker still running, `ebats-dtask-worker`
   is started and 1,000 events `bench_delayed` are published in one `--jsonl` call; each becomes one
   task `bench_record` registered with `delay: 3s` (it appends `<task id> <attempt> <task>` to a file with one
   O_APPEND write, so executions are counted exactly). When its 1,000 results exist, lateness =
   `started_at − due_at` of each result record (wall ms); min, p50, p99 (nearest rank) and max are
   reported. A negative value would be a task run before it was due.
3. **Pickup.** With the three daemons idle, events are published one at a time at 20/s and at 100/s for
   5 s each, first by one `ebatsctl publish` process each, then by a long-running producer: the Python
   client (`clients/python`) with one publisher kept open, as a web application holds one. The event
   `bench_pickup` is registered to one task, `bench_stamp`, which reads `CLOCK_REALTIME` first thing and
   records it with its task id (one O_APPEND write). Pickup = `started_at − due_at` of their results, in
   whole ms as the records keep them, and, to the µs, the handler's stamp − the time taken just before
   the publish call (for `ebatsctl`, just before starting the process). `due_at` is stamped inside the
   publish, after `ebatsctl` has started, read its configuration and opened the database, so the start of
   a process per event is not in the first figure but is in the second; its competing for the two CPUs
   while the daemons wake, and SQLite's sync of the database's folder (once per connection), are in both;
   the long-running producer's is what an application that publishes from its own process sees.
   **W1R** then repeats W1 in a fresh state dir with no scheduler, the ntask worker routing the events itself
   (`workers.bench.route_events: true`), timed, verified and its CPU and peak RSS taken the same way, and then
   the long-running producer's pickup at 20/s and 100/s against that worker alone, by the Python client and
   by `pickup_producer` (bench/pickup_producer.c: the C API, one publisher kept open, the same schedule and
   params). For the long-running producers each pickup is also split in two: the publish call alone (the
   event's durable commit, and the wake-up datagrams it sends after it) and from the call's return to the
   handler's stamp (what the daemons add).
4. **Physical limit.** `sqlite_limit` (bench/sqlite_limit.cpp) does a task queue's row operations on one
   SQLite file in the same file system, in one process, with nothing else: insert 20,000 task rows in
   transactions of N, then repeatedly claim N with a lease (`UPDATE … RETURNING`, one transaction) and
   delete them plus insert N result rows (one transaction); WAL, ebats' table and index shapes and
   time-ordered ids. It runs twice: **A** as the issue defines the limit (N = 100, every commit fsynced),
   and **B** with ebats' batch size and durability (N = 1024; the inserts fsynced like a publish, the
   claims and settles not, like ebats' consumer progress: docs/BROKER.md, "Durability").
   Ratios = W1's end-to-end rate / each, from the same run. ebats runs its parts in several processes at
   once, the limit program one after the other, so ebats can exceed 1. Then, for the pickup, the floor of
   its publish: `sqlite_limit --commit-rate R` inserts one row per transaction into a table shaped like
   ebats' `events` (its id index and ready index), each commit fsynced, on a fixed schedule of R a second
   (20 and 100, as many as the pickup publishes), in the database its drain has just used (so the WAL has
   grown and is rewritten from its start, as ebats' is after W1), and reports each commit's time.

After the runs, once, in a state dir of its own, **the backlog run** (`--backlog N`, default 1,000,000;
`--backlog 0` leaves it out): `ebatsctl enqueue backlog noop --jsonl` puts N ready tasks on a topic no
worker serves yet and `ebatsctl enqueue bench noop --jsonl --delay 1h` N delayed ones; `ebatsctl stats
--json` is timed 5 times; W1 runs again (its scheduler and ntask worker, and the dtask worker of topic
bench over the N delayed tasks); then an ntask worker of topic backlog (2 children) drains the N ready
ones while the results file is counted every 5 ms, a row (tasks/s over the last interval, each daemon's
RSS with its children, database and WAL size) is sampled every 0.5 s, and `ebatsctl stats` is timed every
2 s. Every result is counted by task id (lost, duplicated), and the delayed tasks must all still wait.
gnuplot draws the drain (`docs/img/bench-backlog.png`) and the W2 lateness of every run
(`docs/img/bench-lateness.png`).

The daemons are stopped with SIGTERM at the end of each run (also on failure). Medians and ranges are
over the runs (`--runs N`, default 3). Other options: `--dir DIR` puts the state dirs elsewhere (e.g. a
tmpfs, to take the disk's fsync out), `--synchronous normal` runs ebats and the limit program with
`synchronous=NORMAL` (no fsync at all), `--no-build` skips the build, `--keep` keeps the state dirs,
`--no-doc` leaves docs/benchmarks.md alone (and writes the plots next to its data).
"""


# ------------------------------------------------------------------ summarize-rabbitmq

MARK_AMQP_RATE_RATIO = 0.80   # drain rate ≥ 80 % of the limit program's, same run
MARK_AMQP_CPU_RATIO = 1.5     # CPU per task ≤ 1.5 × the limit program's, same run
MARK_AMQP_P99_MS = 30         # delayed-task lateness p99
MARK_AMQP_RETRY_MS = 20       # retry gap within 20 ms of the asked delay


def amqp_derived(r, n):
    """Per-run figures of the RabbitMQ benchmark, from the raw JSON of one run."""
    lims = [r["limit_before"], r["limit_after"]]
    d = r["w1"]["drain"]
    cpu = d["cpu_s"]
    x = {}
    x["limit_drain_s"] = statistics.fmean(l["drain"]["seconds"] for l in lims)
    x["limit_rate"] = n / x["limit_drain_s"]
    x["limit_rate_before"] = lims[0]["drain"]["per_s"]
    x["limit_rate_after"] = lims[1]["drain"]["per_s"]
    x["limit_first_rate"] = (n - 1) / statistics.fmean(l["drain_from_first_s"] for l in lims)
    x["limit_consume_rate"] = n / statistics.fmean(l["drain_from_consume_s"] for l in lims)
    x["limit_publish_rate"] = n / statistics.fmean(l["publish"]["seconds"] for l in lims)
    x["limit_client_us"] = statistics.fmean(l["drain"]["client_cpu_s"] for l in lims) / n * 1e6
    x["limit_beam_us"] = statistics.fmean(l["drain"]["beam_cpu_s"] for l in lims) / n * 1e6
    x["limit_cpu_us"] = x["limit_client_us"] + x["limit_beam_us"]
    x["rate"] = n / d["seconds"]
    x["first_rate"] = (n - 1) / d["from_first_seconds"]
    x["first_ms"] = d["first_seconds"] * 1000
    x["ratio"] = x["rate"] / x["limit_rate"]
    x["first_ratio"] = x["first_rate"] / x["limit_first_rate"]
    x["consume_ratio"] = x["rate"] / x["limit_consume_rate"]
    x["worker_us"] = cpu["ntask"] / n * 1e6
    x["children_us"] = cpu.get("ntask_children", 0.0) / n * 1e6
    x["client_us"] = x["worker_us"] + x["children_us"]
    x["beam_us"] = cpu["beam"] / n * 1e6
    x["cpu_us"] = x["client_us"] + x["beam_us"]
    x["cpu_ratio"] = x["cpu_us"] / x["limit_cpu_us"]
    # The same from the first result on: the worker's start-up (plugin load in the
    # children, connection, declares) left out.
    cf = d.get("cpu_at_first_s") or {}
    startup = cf.get("ntask", 0.0) + cf.get("ntask_children", 0.0) + (cf.get("beam") or 0.0)
    x["startup_cpu_ms"] = startup * 1000
    x["first_cpu_us"] = ((cpu["ntask"] + cpu.get("ntask_children", 0.0) + cpu["beam"]) - startup) / (n - 1) * 1e6
    x["first_cpu_ratio"] = x["first_cpu_us"] / x["limit_cpu_us"]
    x["client_cpu_ratio"] = x["client_us"] / x["limit_client_us"]
    x["beam_cpu_ratio"] = x["beam_us"] / x["limit_beam_us"]
    x["publish_rate"] = r["w1"]["publish"]["events_per_s"]
    x["route_ms"] = r["w1"]["route_ms"]
    return x


def cmd_summarize_rabbitmq(args):
    machine = json.load(open(args.machine))
    envelope = json.load(open(args.envelope))
    idle = json.load(open(args.idle))
    runs = load_runs(args.runs_dir)
    n = runs[0]["limit_before"]["tasks"]
    der = [amqp_derived(r, n) for r in runs]

    def col(get):
        return [get(r, x) for r, x in zip(runs, der)]

    f2 = lambda v: "%.2f" % v
    f1 = lambda v: "%.1f" % v
    metrics = [
        ("**W1 drain rate**, ntask worker start → 20,000th result", "tasks/s", lambda r, x: x["rate"], fmt_int),
        ("W1 drain rate, first result → 20,000th result", "tasks/s", lambda r, x: x["first_rate"], fmt_int),
        ("W1 time from the worker's start to its first result", "ms", lambda r, x: x["first_ms"], fmt_int),
        ("**physical limit** (amqp_limit) drain rate: start, connect, consume + one ack each, mean of the runs"
         " before and after W1", "tasks/s", lambda r, x: x["limit_rate"], fmt_int),
        ("physical limit drain rate, run before W1", "tasks/s", lambda r, x: x["limit_rate_before"], fmt_int),
        ("physical limit drain rate, run after W1", "tasks/s", lambda r, x: x["limit_rate_after"], fmt_int),
        ("**ratio W1 / limit** (both from their start)", "", lambda r, x: x["ratio"], f2),
        ("ratio W1 / limit (both from their first delivery or result)", "", lambda r, x: x["first_ratio"], f2),
        ("physical limit drain rate from its `basic.qos`, connected (the basis until 2026-12-07)", "tasks/s",
         lambda r, x: x["limit_consume_rate"], fmt_int),
        ("ratio W1 from its start / that (the headline ratio until 2026-12-07)", "",
         lambda r, x: x["consume_ratio"], f2),
        ("**CPU per task, ebats** (worker parent + 2 children + RabbitMQ's VM)", "µs", lambda r, x: x["cpu_us"], f1),
        ("… of which ebats' processes (worker parent + children)", "µs", lambda r, x: x["client_us"], f1),
        ("… of which RabbitMQ's VM", "µs", lambda r, x: x["beam_us"], f1),
        ("**CPU per task, limit** (amqp_limit + RabbitMQ's VM)", "µs", lambda r, x: x["limit_cpu_us"], f1),
        ("… of which amqp_limit", "µs", lambda r, x: x["limit_client_us"], f1),
        ("… of which RabbitMQ's VM", "µs", lambda r, x: x["limit_beam_us"], f1),
        ("**ratio CPU per task ebats / limit**", "", lambda r, x: x["cpu_ratio"], f2),
        ("CPU of the worker's start-up (parent + children + VM, until its first result)", "ms",
         lambda r, x: x["startup_cpu_ms"], fmt_int),
        ("CPU per task, ebats, from its first result on (start-up left out)", "µs", lambda r, x: x["first_cpu_us"], f1),
        ("ratio of that / limit", "", lambda r, x: x["first_cpu_ratio"], f2),
        ("ratio of the client side alone (ebats' processes / amqp_limit)", "", lambda r, x: x["client_cpu_ratio"], f2),
        ("ratio of RabbitMQ's VM alone (serving ebats / serving amqp_limit)", "", lambda r, x: x["beam_cpu_ratio"], f2),
        ("publish rate, `ebatsctl publish --jsonl` (20,000 events, confirmed)", "events/s",
         lambda r, x: x["publish_rate"], fmt_int),
        ("publish rate, amqp_limit (20,000 messages, confirmed batches of 1,000)", "msgs/s",
         lambda r, x: x["limit_publish_rate"], fmt_int),
        ("scheduler routing 20,000 events into tasks (polled with `ebatsctl stats`, ≈)", "ms",
         lambda r, x: x["route_ms"], fmt_int),
        ("delayed-task lateness p50 (W2)", "ms", lambda r, x: r["w2"]["lateness"]["p50"], fmt_ms),
        ("delayed-task lateness p99 (W2)", "ms", lambda r, x: r["w2"]["lateness"]["p99"], fmt_ms),
        ("delayed-task lateness min (W2)", "ms", lambda r, x: r["w2"]["lateness"]["min"], fmt_ms),
        ("delayed-task lateness max (W2)", "ms", lambda r, x: r["w2"]["lateness"]["max"], fmt_ms),
        ("retry gap − 1,000 ms, p50 (W3)", "ms", lambda r, x: r["w3"]["retry"]["p50"], fmt_ms),
        ("retry gap − 1,000 ms, p99 (W3)", "ms", lambda r, x: r["w3"]["retry"]["p99"], fmt_ms),
        ("retry gap − 1,000 ms, min (W3)", "ms", lambda r, x: r["w3"]["retry"]["min"], fmt_ms),
        ("retry gap − 1,000 ms, max (W3)", "ms", lambda r, x: r["w3"]["retry"]["max"], fmt_ms),
        ("tasks whose only result has attempt > 0 (W1 of 20,000 / W2 of 1,000)", "",
         lambda r, x: "%d / %d" % (r["w1"]["verify"]["attempt_above_0"], r["w2"]["lateness"]["attempt_above_0"]),
         None),
    ]
    rows = []
    for label, unit, get, f in metrics:
        values = col(get)
        if f is None:
            rows.append((label, unit, "", "", ", ".join(values)))
            continue
        if any(v is None for v in values):
            rows.append((label, unit, "–", "", ", ".join("–" if v is None else f(v) for v in values)))
            continue
        rows.append((label, unit, f(statistics.median(values)), "%s – %s" % (f(min(values)), f(max(values))),
                     ", ".join(f(v) for v in values)))

    med = lambda get: statistics.median(col(get))
    ratio = med(lambda r, x: x["ratio"])
    first_ratio = med(lambda r, x: x["first_ratio"])
    cpu_ratio = med(lambda r, x: x["cpu_ratio"])
    p99 = med(lambda r, x: r["w2"]["lateness"]["p99"])
    early = sum(col(lambda r, x: r["w2"]["lateness"]["early"]))
    min_late = min(col(lambda r, x: r["w2"]["lateness"]["min"]))
    gaps_ok = all(r["w3"]["retry"]["p99"] is not None for r in runs)
    gap_p99 = med(lambda r, x: r["w3"]["retry"]["p99"]) if gaps_ok else None
    gap_min = min(col(lambda r, x: r["w3"]["retry"]["min"])) if gaps_ok else None
    gap_max = max(col(lambda r, x: r["w3"]["retry"]["max"])) if gaps_ok else None
    lost = sum(col(lambda r, x: r["w1"]["verify"]["lost"]))
    dups = sum(col(lambda r, x: r["w1"]["verify"]["duplicates"]))
    w1_exact = all(col(lambda r, x: r["w1"]["verify"]["exact"]))
    w2_exact = all(col(lambda r, x: r["w2"]["lateness"]["exact"]))
    w3_exact = all(col(lambda r, x: r["w3"]["retry"]["exact"]))
    twice = col(lambda r, x: r["w3"]["retry"].get("tasks_run_exactly_twice", 0))
    marks = [
        ("drain rate ≥ %d %% of the limit's (median of the per-run ratios, from each one's start)" %
         round(MARK_AMQP_RATE_RATIO * 100), ratio >= MARK_AMQP_RATE_RATIO,
         "%.0f %% (range %.0f – %.0f %%); from the first result: %.0f %%" % (
             ratio * 100, min(col(lambda r, x: x["ratio"])) * 100, max(col(lambda r, x: x["ratio"])) * 100,
             first_ratio * 100)),
        ("CPU per task ≤ %.1f × the limit's (median of the per-run ratios, whole drain window)" % MARK_AMQP_CPU_RATIO,
         cpu_ratio <= MARK_AMQP_CPU_RATIO, "%.2f × (range %.2f – %.2f); from the first result: %.2f ×" % (
             cpu_ratio, min(col(lambda r, x: x["cpu_ratio"])), max(col(lambda r, x: x["cpu_ratio"])),
             med(lambda r, x: x["first_cpu_ratio"]))),
        # A run whose tasks did not all come back (the waits allow it, to report the loss) has its
        # percentiles over the ones that did: no latency mark is met on such a run.
        ("delayed-task lateness p99 ≤ %d ms (median over runs)" % MARK_AMQP_P99_MS,
         w2_exact and p99 <= MARK_AMQP_P99_MS,
         "%s ms%s" % (fmt_ms(p99), "" if w2_exact else ", over the results of incomplete runs (see 0 lost)")),
        ("never early (every delayed task in every run)", early == 0,
         "%d early; smallest lateness %s ms" % (early, fmt_ms(min_late))),
        ("retry gap within %d ms of the asked delay (median over runs of the p99; no gap below −%d ms in any run)" %
         (MARK_AMQP_RETRY_MS, MARK_AMQP_RETRY_MS),
         w3_exact and gaps_ok and gap_p99 <= MARK_AMQP_RETRY_MS and gap_min >= -MARK_AMQP_RETRY_MS,
         ("p99 %s ms; min %s ms, max %s ms over all runs%s" % (
             fmt_ms(gap_p99), fmt_ms(gap_min), fmt_ms(gap_max),
             "" if w3_exact else ", over the pairs of incomplete runs (see W3)"))
         if gaps_ok else "no complete retry pair in some run"),
        ("0 lost, 0 duplicated (W1 every run, and W2: every delayed task run once)",
         w1_exact and w2_exact and lost == 0 and dups == 0,
         "; ".join(["%d lost, %d duplicated" % (lost, dups)] +
                   [p for r in runs for p in r["w1"]["verify"]["problems"]] +
                   ["W2 run %d: %d results, %d executions recorded" % (
                       i + 1, r["w2"]["lateness"]["results"], r["w2"]["lateness"].get("executions_recorded", -1))
                    for i, r in enumerate(runs) if not r["w2"]["lateness"]["exact"]])),
        ("W3: each of the %s tasks ran exactly twice (attempt 0, then 1), every run" % fmt_int(
            runs[0]["w3"]["retry"]["tasks"] or 1000), w3_exact,
         "%s of %s" % (", ".join(str(t) for t in twice), fmt_int(runs[0]["w3"]["retry"]["tasks"]))),
    ]

    # Console summary.
    print()
    print("%-62s %-9s %12s  %s" % ("metric (%d runs)" % len(runs), "unit", "median", "range"))
    for label, unit, m_, rng, each in rows:
        print("%-62s %-9s %12s  %s" % (label.replace("**", "")[:62], unit, m_, rng or each))
    for label, met, value in marks:
        print("%-4s %s: %s" % ("MET" if met else "MISS", label, value))

    # CPU seconds of the drain window, medians.
    cpu_rows = [
        ("amqp_limit (consume, ack)", med(lambda r, x: x["limit_client_us"]) * n / 1e6),
        ("RabbitMQ's VM, serving amqp_limit", med(lambda r, x: x["limit_beam_us"]) * n / 1e6),
        ("ebats-ntask-worker (parent)", med(lambda r, x: r["w1"]["drain"]["cpu_s"]["ntask"])),
        ("ntask worker children (2)", med(lambda r, x: r["w1"]["drain"]["cpu_s"].get("ntask_children", 0.0))),
        ("RabbitMQ's VM, serving ebats", med(lambda r, x: r["w1"]["drain"]["cpu_s"]["beam"])),
    ]

    m = machine
    first = runs[0]["limit_before"]
    out = []
    out.append("## RabbitMQ\n")
    out.append("Measured by `%s` on %s. This section is rewritten by every run of the command; the numbers below"
               " are real, from that run.\n" % (args.command, m["date"]))
    out.append("### Machine and broker\n")
    out.append("| | |\n|---|---|")
    out.append("| CPU | %s, %d logical CPUs (`nproc`) |" % (m["cpu"], m["nproc"]))
    out.append("| memory | %.1f GiB |" % m["mem_gib"])
    out.append("| kernel / OS | Linux %s / %s |" % (m["kernel"], m["os"] or "?"))
    out.append("| RabbitMQ | %s (Debian package rabbitmq-server %s): one private node (`tests/amqp/rabbitmq-node.sh`),"
               " listener on 127.0.0.1, its data in a temporary folder, `%s`, on %s (fsync of 4 KiB there: p50 %.2f ms, p90 %.2f ms) |" % (
                   first["rabbitmq"], args.package, m["state_dir"], m["filesystem"], m["fsync_4k_ms"]["p50"],
                   m["fsync_4k_ms"]["p90"]))
    out.append("| Erlang | %s (erlang-base %s) |" % (first["platform"], args.erlang_package))
    out.append("| client library | rabbitmq-c (librabbitmq) %s, for ebats and amqp_limit alike |" % args.librabbitmq)
    out.append("| ebats | `broker.amqp` defaults (quorum queues, `delay_unit: 1s`, 24 delay levels) except `prefix`,"
               " a fresh one per run; `workers: {bench: {processes: 2}}`; results file on |")
    out.append("| task message | body %d bytes (one `noop` task's envelope, params `{\"n\":10000}`), persistent,"
               " content type %s, type %s, a timestamp, a %d-byte message id; headers seen by `basic.get`: %s."
               " amqp_limit sends the same properties and a body of that size |" % (
                   envelope["body_bytes"], envelope["content_type"], envelope.get("type"),
                   envelope["message_id_bytes"],
                   ", ".join("`%s`" % k for k in envelope.get("header_keys", [])) or "none"))
    out.append("| RabbitMQ's VM idle | %.1f ms of CPU per second (2 s with no client, before the runs) |" %
               (idle["beam_idle_cpu_s_per_s"] * 1000))
    out.append("| load average (1 min) at the start / after each run | %.2f / %s |" % (
        m["loadavg_at_start"], ", ".join("%.2f" % r.get("loadavg", float("nan")) for r in runs)))
    out.append("")
    out.extend(results_and_marks_tables(runs, rows, marks))
    out.extend(cpu_table("### Where the CPU goes in the drain (median CPU seconds per run, 20,000 tasks)",
                         cpu_rows, "%.2f"))
    out.append("Wall time of the drain: W1 median %.2f s, the limit program's %.2f s. With 2 CPUs, the CPU seconds of"
               " a window can reach twice its wall time.\n" % (
                   med(lambda r, x: r["w1"]["drain"]["seconds"]), med(lambda r, x: x["limit_drain_s"])))
    finish_section(args, out, "rabbitmq", HOW_MEASURED_AMQP, "RabbitMQ")


HOW_MEASURED_AMQP = """\
`bench/run.sh --broker rabbitmq` builds ebats (Release) into `build-bench/`, starts one private RabbitMQ node
with `tests/amqp/rabbitmq-node.sh start DIR` (stopped at the end, also on failure), and connects as its
`guest` user over loopback (`EBATS_BROKER_PASSWORD=guest`). Before the runs it measures one task envelope:
one `bench_noop` event is published in a throwaway prefix, the scheduler routes it, and
`amqp_limit --peek` takes the task message off `PREFIX.ntask.bench` and reports its size. Each run then
uses a name prefix of its own (`broker.amqp.prefix: bench-PID-rRUN`), and deletes its queues and exchanges
at its end, so no run sees another's queues. In each run, in this order:

1. **Physical limit, before.** `amqp_limit --publish-only` (bench/amqp_limit.c: plain rabbitmq-c, no
   framework) declares one durable quorum queue and publishes 20,000 persistent messages with the
   envelope's body size, content type and a message id, in batches of 1,000 with publisher confirms
   (every confirm of a batch awaited, `multiple` acks handled). Then a second process, `amqp_limit
   --drain-only T0`, started the way the worker is (T0 = `date +%s%N` just before its start), connects,
   declares the queue again (as any consumer does), sets `basic.qos(1024)` (the ntask worker's prefetch
   with 2 children once it has measured its tasks: min(`claim_batch` 1,024, 512 per child); it starts at
   2 per child), consumes, does nothing with each message and sends one `basic.ack` per message, then
   makes one synchronous round trip on the channel so the broker has read every ack, and deletes the
   queue. Its **drain** time runs from T0 to that round trip's reply (exec, connection and declaration
   included, as they are in the worker's); it also reports the time from its first delivery, and from
   its `basic.qos` (the basis of these figures until 2026-12-07, when one process published and drained
   and its clock started connected, with its queue declared).
2. **W1, drain.** 20,000 `{"n":…}` lines are published with `ebatsctl publish bench_noop --jsonl`
   (publish rate = 20,000 / that command's wall time), `ebats-scheduler` is started alone and stopped
   once `ebatsctl stats --json` shows 20,000 tasks pending on topic `bench` (polled every ≈ 0.1 s; the
   routing time is approximate). Then `ebats-ntask-worker --topic bench` (2 children) is started; the
   clock runs from just before its start until the results file holds 20,000 lines (watched by a Python
   process started, and past its own start-up, before the clock starts; it polls every 5 ms, and
   notes when the first line appears too). **Drain rate** = 20,000 / that time; from the first result =
   19,999 / (time of the 20,000th − time of the first). The worker's time includes its start-up (plugin
   load in the children, connection, declaring its queues and the 24 delay levels') and its prefetch
   growing from 4; amqp_limit's includes its own exec, connection and one declaration. The worker's end
   is seen by the 5 ms poll (≈ 2.5 ms late on average), amqp_limit's by itself. It does not include the worker's last
   commit: a batch's result lines are written just before its commit, so the last acknowledgement and
   result message (about a millisecond) come after the clock stops, where amqp_limit's clock stops after a
   round trip behind its last ack.
3. **Physical limit, after.** The same program again (with the worker of W1 still running, idle). The
   run's limit = 20,000 / the mean of the two drain times; **ratio** = W1's rate / that, per run, so the
   machine's drift between runs cancels out.
4. **W2, delayed-task lateness.** The scheduler and `ebats-dtask-worker` are started (the ntask worker
   still runs) and 1,000 events `bench_delayed` are published in one `--jsonl` call; each becomes one
   task `bench_record` registered with `delay: 3s`, which travels through the delay levels. Lateness =
   `started_at − due_at` of each result (wall ms); a negative one would be a task run early.
5. **W3, retry gap.** 1,000 events `bench_retry`, each one task `bench_retry_once`
   (`retry: {max: 1, backoff: [1s]}`): attempt 0 calls `retry_after(1000)` and returns `EBATS_RETRY`,
   attempt 1 returns OK; both append `<id> <attempt> <task>` to a record file. Gap = attempt 1's
   `started_at` − attempt 0's `finished_at` − 1,000 ms, from the results file; each task must have
   exactly these two results and two recorded executions.
6. **Checks.** The results file must hold exactly 20,000 `ok` results of `noop` for 20,000 distinct task
   ids, and `ebatsctl stats --json` afterwards must show nothing pending, delayed or dead.

**CPU per task** = CPU seconds of every process that handles the tasks during the drain window, divided
by 20,000: utime + stime from `/proc/PID/stat`, or, when larger, the run time of the process's live
threads from `/proc/PID/task/*/schedstat` (nanoseconds; `/proc/PID/stat` rounds each of utime and stime
down to a 10 ms tick, which a single reading of a process started inside the window does not cancel out). For the limit: `amqp_limit` itself (`getrusage`) plus
RabbitMQ's VM (`beam.smp`, pid from `DIR/beam.pid`), read at the drain process's start and end (its
whole life, as for the worker). For ebats: the
ntask worker parent and its 2 children (their whole lives: they start with the window) plus the VM's
CPU between the start line and the 20,000th result, a difference of two readings (what one reading
rounds off, the other does too). The VM's share is the broker's work for the tasks:
delivering, taking the acks and, for ebats, storing the result records ebats publishes to its
`PREFIX.results` stream; its idle CPU (measured before the runs, above) is in both. The scheduler and
`ebatsctl publish` are not in it: both programs' messages are in the queue before the window opens.
Medians and ranges are over the runs (`--runs N`, default 3). Other options: `--dir DIR` (where the
node, state dirs and results live), `--no-build`, `--keep` (keeps the state dirs, per-run JSON and
the node's logs), `--no-doc` (leaves docs/benchmarks.md alone). No step asserts a time: the marks are
read off the figures.
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("machine")
    s.add_argument("--dir", required=True)
    s = sub.add_parser("publish")
    s.add_argument("--ctl", required=True)
    s.add_argument("--config", required=True)
    s.add_argument("--event", required=True)
    s.add_argument("--input", required=True)
    s = sub.add_parser("wait")
    s.add_argument("--file", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--t0-ns", type=int)
    s.add_argument("--timeout", type=float, required=True)
    s.add_argument("--pid", action="append")
    s.add_argument("--delta-pid", action="append")
    s.add_argument("--allow-short", action="store_true")
    s.add_argument("--start-fifo")
    s = sub.add_parser("verify")
    s.add_argument("--file", required=True)
    s.add_argument("--db")
    s.add_argument("--stats")
    s.add_argument("--task", required=True)
    s.add_argument("--expect", type=int, required=True)
    s = sub.add_parser("lateness")
    s.add_argument("--file", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--record")
    s = sub.add_parser("pickup")
    s.add_argument("--ctl", help="ebatsctl: one process per event (without --library)")
    s.add_argument("--config", required=True)
    s.add_argument("--event", required=True)
    s.add_argument("--file", required=True)
    s.add_argument("--rate", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--library", help="libebats.so: publish with the Python client, one publisher kept open")
    s.add_argument("--producer", help="pickup_producer: publish with the C API, one publisher kept open")
    s.add_argument("--record", help="the bench plugin's record file: the event's task is bench_stamp, whose "
                   "clock stamps give the wait to the microsecond")
    s = sub.add_parser("retry-gap")
    s.add_argument("--file", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--delay-ms", type=int, required=True)
    s.add_argument("--record")
    s = sub.add_parser("backlog")
    s.add_argument("--bin", required=True)
    s.add_argument("--config", required=True)
    s.add_argument("--state", required=True)
    s.add_argument("--queued", type=int, required=True)
    s.add_argument("--delayed", type=int, required=True)
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--events-input", required=True)
    s.add_argument("--series", required=True)
    s.add_argument("--every", type=float, default=0.5)
    s.add_argument("--stats-every", type=float, default=2.0)
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("summarize-rabbitmq")
    s.add_argument("--runs-dir", required=True)
    s.add_argument("--machine", required=True)
    s.add_argument("--envelope", required=True)
    s.add_argument("--idle", required=True)
    s.add_argument("--package", default="?")
    s.add_argument("--erlang-package", default="?")
    s.add_argument("--librabbitmq", default="?")
    s.add_argument("--doc", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--notes")
    s = sub.add_parser("summarize")
    s.add_argument("--backlog")
    s.add_argument("--plots")
    s.add_argument("--runs-dir", required=True)
    s.add_argument("--machine", required=True)
    s.add_argument("--doc", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--notes")
    args = p.parse_args()
    {"machine": cmd_machine, "publish": cmd_publish, "wait": cmd_wait, "verify": cmd_verify,
     "lateness": cmd_lateness, "retry-gap": cmd_retry_gap, "pickup": cmd_pickup, "summarize": cmd_summarize,
     "summarize-rabbitmq": cmd_summarize_rabbitmq, "backlog": cmd_backlog}[args.cmd](args)


if __name__ == "__main__":
    main()
