#!/usr/bin/env python3
"""Retention measurement (not a test): does the SQLite file stay flat once past results.keep?

    python3 bench/retention.py [--tasks N] [--keep DURATION] [--chunk N] [--backlog N]
                               [--every SECONDS] [--w1 N] [--w1-rounds R] [--build DIR] [--dir DIR]

Runs copies of the real ebats-scheduler and one ntask worker (2 children, the test plugin's
`noop` task) on a fresh SQLite file with `results: {keep: DURATION}` and no results
file, and feeds them N events (one task each) in chunks of --chunk with
`ebatsctl publish --jsonl`, holding the backlog (published - done) under --backlog.
Every --every seconds it prints one CSV line: seconds since start, tasks done,
rows in `results`, PRAGMA page_count and freelist_count, and the sizes of the
database file and its WAL in MiB. Stops when N are done, then samples for a
further window plus 15 s so the last rows age out, and prints the drain rate of
the first and of the last tenth of the tasks (from the samples, interpolated) and
their ratio. Default: 1,000,000 tasks, keep 20s; --keep none runs without
retention, for comparison.

With --w1 N, W1 follows (as bench/run.sh runs it: N events published while no
daemon runs, then the scheduler and the worker started and timed until the
N-th result) R times (default 3) on that database and R times on a fresh,
empty one with the same config, alternating (each first in every other
round), and prints each drain rate, the medians and their ratio (used / fresh).
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--keep", default="20s")
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--backlog", type=int, default=40_000)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--w1", type=int, default=0)
    p.add_argument("--w1-rounds", type=int, default=3)
    p.add_argument("--build", default=os.path.join(REPO, "build"))
    p.add_argument("--dir", default=None)
    a = p.parse_args()
    keep_s = 0 if a.keep == "none" else parse_seconds(a.keep)
    state = tempfile.mkdtemp(prefix="ebats-retention-", dir=a.dir)
    # Copies of the programs and the plugin, so a rebuild meanwhile cannot pull them away.
    bin_dir = os.path.join(state, "bin")
    plugins = os.path.join(state, "plugins")
    os.makedirs(bin_dir)
    for name in ("ebatsctl", "ebats-scheduler", "ebats-ntask-worker", "ebats-worker-child"):
        shutil.copy2(os.path.join(a.build, "bin", name), bin_dir)
    shutil.copytree(os.path.join(a.build, "tests", "plugins", "good"), plugins)
    config = write_config(state, plugins, a.keep)
    db = os.path.join(state, "ebats.db")
    ctl = os.path.join(bin_dir, "ebatsctl")
    subprocess.run([ctl, "--config", config, "setup"], check=True, stdout=subprocess.DEVNULL)
    logs = open(os.path.join(state, "daemons.log"), "w")
    daemons = start_daemons(bin_dir, config, logs)
    print(f"# state {state}; tasks {a.tasks}; keep {a.keep}; chunk {a.chunk}", flush=True)
    print("seconds,done,results_rows,page_count,freelist_count,db_mib,wal_mib", flush=True)
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    start = time.monotonic()
    next_sample = start
    published = 0
    done = 0
    finished_at = None
    progress = [(0.0, 0)]  # (seconds, done) at every sample
    chunk = "".join('{"n":%d}\n' % i for i in range(a.chunk)).encode()
    try:
        while True:
            done = done_count(ctl, config)
            now = time.monotonic()
            if now >= next_sample:
                sample(reader, db, now - start, done)
                progress.append((now - start, done))
                next_sample += a.every
            if done >= a.tasks and finished_at is None:
                finished_at = now
                progress.append((now - start, done))
                print(f"# {a.tasks} done after {now - start:.0f} s", flush=True)
            if finished_at is not None and now - finished_at > keep_s + 15:
                sample(reader, db, now - start, done)
                print_tenths(progress, a.tasks)
                break
            if published < a.tasks and published - done < a.backlog:
                n = min(a.chunk, a.tasks - published)
                subprocess.run([ctl, "--config", config, "publish", "e", "--jsonl"], input=chunk if n == a.chunk
                               else "".join('{"n":%d}\n' % i for i in range(n)).encode(),
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                published += n
            else:
                time.sleep(0.2)
            for d in daemons:
                if d.poll() is not None:
                    sys.exit(f"a daemon exited ({d.returncode}); see {state}/daemons.log")
    finally:
        stop_daemons(daemons)
    if a.w1 > 0:
        fresh_dir = os.path.join(state, "fresh")
        os.makedirs(fresh_dir)
        fresh = write_config(fresh_dir, plugins, a.keep)
        subprocess.run([ctl, "--config", fresh, "setup"], check=True, stdout=subprocess.DEVNULL)
        rates = {"used": [], "fresh": []}
        for round_ in range(a.w1_rounds):
            # Each database goes first in every other round: the first of a pair tends to differ.
            pair = (("used", config), ("fresh", fresh))
            for label, cfg in (pair if round_ % 2 == 0 else pair[::-1]):
                rate = w1_drain(bin_dir, cfg, a.w1, logs)
                rates[label].append(rate)
                pages = page_count(os.path.join(os.path.dirname(cfg), "ebats.db"))
                print(f"# W1 on the {label} database ({pages} pages): {a.w1} tasks at {rate:.0f} tasks/s", flush=True)
        used, new = statistics.median(rates["used"]), statistics.median(rates["fresh"])
        print(f"# W1 medians: used {used:.0f}, fresh {new:.0f} tasks/s; ratio used / fresh {used / new:.3f}",
              flush=True)


def page_count(db):
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return reader.execute("PRAGMA page_count").fetchone()[0]
    finally:
        reader.close()


def write_config(state, plugins, keep):
    """The config of a run: its database is ebats.db beside it."""
    config = os.path.join(state, "ebats.yaml")
    with open(config, "w") as f:
        f.write("broker: {url: sqlite://ebats.db}\n"
                f"plugins: {{dir: {plugins}}}\n"
                + ("" if keep == "none" else f"results: {{keep: {keep}}}\n") +
                "events:\n  e:\n    - {task: noop, topic: t}\n"
                "workers:\n  t: {processes: 2}\n")
    return config


def start_daemons(bin_dir, config, logs):
    return [subprocess.Popen([os.path.join(bin_dir, name), "--config", config] + extra, stdout=logs, stderr=logs)
            for name, extra in (("ebats-scheduler", []), ("ebats-ntask-worker", ["--topic", "t"]))]


def stop_daemons(daemons):
    for d in daemons:
        if d.poll() is None:
            d.terminate()
    for d in daemons:
        d.wait(timeout=60)


def w1_drain(bin_dir, config, n, logs):
    """W1: n events published with no daemon running, then the daemons started and timed until n more
    tasks are done. Returns tasks per second from the daemons' start."""
    ctl = os.path.join(bin_dir, "ebatsctl")
    db = os.path.join(os.path.dirname(config), "ebats.db")
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)

    def done():
        row = reader.execute("SELECT done FROM topic_totals WHERE topic = 't'").fetchone()
        return row[0] if row else 0

    before = done()
    subprocess.run([ctl, "--config", config, "publish", "e", "--jsonl"],
                   input="".join('{"n":%d}\n' % i for i in range(n)).encode(),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    daemons = start_daemons(bin_dir, config, logs)
    try:
        while done() < before + n:
            if any(d.poll() is not None for d in daemons):
                sys.exit(f"a daemon exited during W1; see {os.path.dirname(logs.name)}/daemons.log")
            time.sleep(0.005)
        return n / (time.monotonic() - start)
    finally:
        stop_daemons(daemons)
        reader.close()


def print_tenths(progress, tasks):
    """The rate of the first and of the last tenth of the tasks, from the samples."""
    def time_at(count):
        for (t0, d0), (t1, d1) in zip(progress, progress[1:]):
            if d1 >= count:
                return t0 + (t1 - t0) * (count - d0) / (d1 - d0) if d1 > d0 else t1
        return progress[-1][0]
    tenth = tasks // 10
    first = tenth / max(time_at(tenth) - time_at(0), 1e-9)
    last = tenth / max(time_at(tasks) - time_at(tasks - tenth), 1e-9)
    print(f"# first tenth {first:.0f} tasks/s, last tenth {last:.0f} tasks/s, ratio {last / first:.3f}", flush=True)


def done_count(ctl, config):
    out = subprocess.run([ctl, "--config", config, "stats", "--json"], check=True, capture_output=True).stdout
    return sum(row["done"] or 0 for row in json.loads(out) if row.get("topic") == "t")


def sample(reader, db, seconds, done):
    rows = reader.execute("SELECT count(*) FROM results").fetchone()[0]
    pages = reader.execute("PRAGMA page_count").fetchone()[0]
    free = reader.execute("PRAGMA freelist_count").fetchone()[0]
    size = os.path.getsize(db) / 2**20
    wal = os.path.getsize(db + "-wal") / 2**20 if os.path.exists(db + "-wal") else 0.0
    print(f"{seconds:.0f},{done},{rows},{pages},{free},{size:.1f},{wal:.1f}", flush=True)


def parse_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for u in ("ms", "s", "m", "h", "d"):
        if text.endswith(u) and text[: -len(u)].isdigit():
            return int(text[: -len(u)]) * units[u]
    sys.exit(f"--keep: give a single-unit duration like 20s, got {text!r}")


if __name__ == "__main__":
    main()
