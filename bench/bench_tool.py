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
  verify    --file F --db DB --task T --expect N
                                           exactly N ok results of task T, distinct ids, queue
                                           empty, no dead letters (file and database)
  lateness  --file F --task T --expect N [--record R]
                                           started_at - due_at of task T: min/p50/p99/max ms
  summarize --runs-dir D --machine M --doc PATH --command CMD
                                           medians and ranges over runs, marks, the document
"""
import argparse
import collections
import datetime
import json
import math
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time

MARK_TASKS_PER_S = 20000
MARK_P99_MS = 50
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

def cpu_seconds(pid):
    """utime + stime of a live process, in seconds (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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
    deadline = time.time() + args.timeout
    lines = 0
    offset = 0
    while True:
        try:
            with open(args.file, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            lines += chunk.count(b"\n")
        except FileNotFoundError:
            pass
        if lines >= args.count:
            break
        if time.time() > deadline:
            fail("timed out after %.0fs: %s has %d lines, waiting for %d; see the daemon logs next to it" %
                 (args.timeout, args.file, lines, args.count))
        time.sleep(0.005)
    seconds = (time.time_ns() - args.t0_ns) / 1e9
    cpu = {}
    for spec in args.pid or []:
        name, pid = spec.split("=", 1)
        pid = int(pid)
        cpu[name] = cpu_seconds(pid)
        kids = children_of(pid)
        if kids:
            cpu[name + "_children"] = sum(c for c in (cpu_seconds(k) for k in kids) if c is not None)
            cpu[name + "_children_n"] = len(kids)
    print(json.dumps({"lines": lines, "seconds": seconds, "cpu_s": cpu}))


# ------------------------------------------------------------------ verify

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
    }
    db = sqlite3.connect("file:%s?mode=ro" % args.db, uri=True, timeout=10)
    try:
        out["db_results"] = db.execute("SELECT count(*), count(DISTINCT task_id) FROM results WHERE task = ?",
                                       (args.task,)).fetchone()
        out["db_tasks_left"] = db.execute("SELECT count(*) FROM tasks").fetchone()[0]
        out["db_events_left"] = db.execute("SELECT count(*) FROM events").fetchone()[0]
        out["db_dead_letters"] = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        db.close()
    problems = []
    if out["lost"] or out["duplicates"] or out["results"] != args.expect:
        problems.append("%d results for %d distinct tasks (expected %d): %d lost, %d duplicated" %
                        (out["results"], out["distinct_ids"], args.expect, out["lost"], out["duplicates"]))
    if out["not_ok"]:
        problems.append("%d results are not ok: %s" % (out["not_ok"], dict(statuses)))
    if list(out["db_results"]) != [args.expect, args.expect]:
        problems.append("the database's results table has %d rows for %d distinct tasks, expected %d" %
                        (out["db_results"][0], out["db_results"][1], args.expect))
    if out["db_tasks_left"] or out["db_events_left"] or out["db_dead_letters"]:
        problems.append("queue not empty afterwards: %d tasks, %d events, %d dead letters left in %s" %
                        (out["db_tasks_left"], out["db_events_left"], out["db_dead_letters"], args.db))
    out["exact"] = not problems
    out["problems"] = problems
    print(json.dumps(out))


# ------------------------------------------------------------------ lateness

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
    }
    if args.record:
        with open(args.record) as f:
            lines = [l.split() for l in f if l.strip()]
        rec_ids = collections.Counter(l[0] for l in lines)
        out["executions_recorded"] = len(lines)
        out["executions_distinct"] = len(rec_ids)
    out["exact"] = (out["results"] == args.expect and out["distinct_ids"] == args.expect and
                    out["ok"] == args.expect and
                    (not args.record or (out["executions_recorded"] == args.expect and
                                         out["executions_distinct"] == args.expect)))
    print(json.dumps(out))


# ------------------------------------------------------------------ summarize

def fmt_int(x):
    return "{:,.0f}".format(x)


def fmt_ms(x):
    return "{:,.0f}".format(x) if float(x).is_integer() else "{:,.1f}".format(x)


def cmd_summarize(args):
    machine = json.load(open(args.machine))
    runs = []
    for name in sorted(os.listdir(args.runs_dir)):
        if name.startswith("run-") and name.endswith(".json"):
            runs.append(json.load(open(os.path.join(args.runs_dir, name))))
    if not runs:
        fail("no run-*.json in " + args.runs_dir)

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
        ("physical limit A: txns of 100, every commit fsynced (the issue's program)", "tasks/s",
         lambda r: r["limit"]["tasks_per_s"], fmt_int),
        ("physical limit B: txns of 1024, inserts fsynced, claims and settles not (ebats' batches and durability)",
         "tasks/s", lambda r: r["limit_like_ebats"]["tasks_per_s"], fmt_int),
        ("ratio end to end / limit A", "", lambda r: r["w1"]["tasks_per_s"] / r["limit"]["tasks_per_s"],
         lambda x: "%.2f" % x),
        ("ratio end to end / limit B", "", lambda r: r["w1"]["tasks_per_s"] / r["limit_like_ebats"]["tasks_per_s"],
         lambda x: "%.2f" % x),
    ]
    rows = []
    for label, unit, get, f in metrics:
        values = col(get)
        rows.append((label, unit, f(statistics.median(values)), "%s – %s" % (f(min(values)), f(max(values))),
                     ", ".join(f(v) for v in values)))

    med_rate = statistics.median(col(lambda r: r["w1"]["tasks_per_s"]))
    med_p99 = statistics.median(col(lambda r: r["w2"]["lateness"]["p99"]))
    early = sum(col(lambda r: r["w2"]["lateness"]["early"]))
    min_late = min(col(lambda r: r["w2"]["lateness"]["min"]))
    lost = sum(col(lambda r: r["w1"]["verify"]["lost"]))
    dups = sum(col(lambda r: r["w1"]["verify"]["duplicates"]))
    exact_w1 = all(col(lambda r: r["w1"]["verify"]["exact"]))
    exact_w2 = all(col(lambda r: r["w2"]["lateness"]["exact"]))
    marks = [
        ("≥ %s tasks/s end to end (median)" % fmt_int(MARK_TASKS_PER_S), med_rate >= MARK_TASKS_PER_S,
         "%s tasks/s" % fmt_int(med_rate)),
        ("lateness p99 ≤ %d ms (median)" % MARK_P99_MS, med_p99 <= MARK_P99_MS, "%s ms" % fmt_ms(med_p99)),
        ("never early (every delayed task in every run)", early == 0,
         "%d early; smallest lateness %s ms" % (early, fmt_ms(min_late))),
        ("0 lost, 0 duplicated (W1 and W2, every run)", exact_w1 and exact_w2 and lost == 0 and dups == 0,
         "%d lost, %d duplicated" % (lost, dups)),
    ]

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
    out.append("# Benchmarks\n")
    out.append("Measured by `%s` on %s. The file is rewritten by every run of the command;"
               " the numbers below are real, from that run.\n" % (args.command, m["date"]))
    out.append("## Machine\n")
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
    out.append("## Results (%d runs: median, range, every run)\n" % len(runs))
    out.append("| metric | unit | median | range (min – max) | runs |")
    out.append("|---|---|---:|---|---|")
    for label, unit, med, rng, each in rows:
        out.append("| %s | %s | %s | %s | %s |" % (label, unit, med, rng, each))
    out.append("")
    out.append("## Marks\n")
    out.append("| mark | met? | measured |")
    out.append("|---|---|---|")
    for label, met, value in marks:
        out.append("| %s | %s | %s |" % (label, "**yes**" if met else "**no**", value))
    out.append("")
    out.append("## Where the CPU goes in W1 (median CPU seconds per run)\n")
    out.append("| process | CPU s |")
    out.append("|---|---:|")
    for label, v in cpu_rows:
        out.append("| %s | %s |" % (label, v))
    out.append("")
    out.append("W1's wall time (median %.2f s) against these CPU seconds: a process whose CPU seconds approach the"
               " wall time is the bottleneck; if none does, the time goes to waiting (fsync of each commit, polling,"
               " handing tasks between processes).\n" % statistics.median(col(lambda r: r["w1"]["drain"]["seconds"])))
    if args.notes and os.path.exists(args.notes):
        out.append(open(args.notes).read().rstrip() + "\n")
    out.append("## How it is measured\n")
    out.append(HOW_MEASURED)
    with open(args.doc, "w") as f:
        f.write("\n".join(out))
    print("wrote " + args.doc)


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
   child process, result record and acknowledgement. Afterwards the results file and the database's
   `results` table must hold exactly 20,000 `ok` results for 20,000 distinct task ids, and the `tasks`,
   `events` and `dead_letters` tables must be empty (0 lost, 0 duplicated).
2. **W2, delayed-task lateness.** With the scheduler and ntask worker still running, `ebats-dtask-worker`
   is started and 1,000 events `bench_delayed` are published in one `--jsonl` call; each becomes one
   task `bench_record` registered with `delay: 3s` (it appends `<task id> <attempt>` to a file with one
   O_APPEND write, so executions are counted exactly). When its 1,000 results exist, lateness =
   `started_at − due_at` of each result record (wall ms); min, p50, p99 (nearest rank) and max are
   reported. A negative value would be a task run before it was due.
3. **Physical limit.** `sqlite_limit` (bench/sqlite_limit.cpp) does a task queue's row operations on one
   SQLite file in the same file system, in one process, with nothing else: insert 20,000 task rows in
   transactions of N, then repeatedly claim N with a lease (`UPDATE … RETURNING`, one transaction) and
   delete them plus insert N result rows (one transaction); WAL, ebats' table and index shapes and
   time-ordered ids. It runs twice: **A** as the issue defines the limit (N = 100, every commit fsynced),
   and **B** with ebats' batch size and durability (N = 1024; the inserts fsynced like a publish, the
   claims and settles not, like ebats' consumer progress: docs/BROKER.md, "Durability").
   Ratios = W1's end-to-end rate / each, from the same run. ebats runs its parts in several processes at
   once, the limit program one after the other, so ebats can exceed 1.

The daemons are stopped with SIGTERM at the end of each run (also on failure). Medians and ranges are
over the runs (`--runs N`, default 3). Other options: `--dir DIR` puts the state dirs elsewhere (e.g. a
tmpfs, to take the disk's fsync out), `--synchronous normal` runs ebats and the limit program with
`synchronous=NORMAL` (no fsync at all), `--no-build` skips the build, `--keep` keeps the state dirs,
`--no-doc` leaves docs/benchmarks.md alone.
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
    s.add_argument("--start-fifo")
    s = sub.add_parser("verify")
    s.add_argument("--file", required=True)
    s.add_argument("--db", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--expect", type=int, required=True)
    s = sub.add_parser("lateness")
    s.add_argument("--file", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--record")
    s = sub.add_parser("summarize")
    s.add_argument("--runs-dir", required=True)
    s.add_argument("--machine", required=True)
    s.add_argument("--doc", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--notes")
    args = p.parse_args()
    {"machine": cmd_machine, "publish": cmd_publish, "wait": cmd_wait, "verify": cmd_verify,
     "lateness": cmd_lateness, "summarize": cmd_summarize}[args.cmd](args)


if __name__ == "__main__":
    main()
