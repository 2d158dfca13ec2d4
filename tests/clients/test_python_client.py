#!/usr/bin/python3
"""The Python module (clients/python) against the real daemons, as a user installs and uses it.

    /usr/bin/python3 tests/clients/test_python_client.py --build BUILD --source SOURCE

Installs the module with the command of docs/PYTHON.md into a temporary folder and imports it from there;
runs the article's scenarios end to end and checks the result records; checks that bad input raises the
right exception and publishes nothing; checks idempotent re-publishing and the envelopes against
docs/envelope.schema.json (SQLite); runs every command and Python block of docs/PYTHON.md and every example
of examples/python/. SQLite by default; RabbitMQ when EBATS_TEST_BACKEND=amqp (the SQLite-only checks say
that they are skipped). Exit status 0 = pass.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ORDER = {"order_id": "FB138020392193312"}  # the article's own example
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EBATS_NS = uuid.UUID("55d30b06-e5f9-4a5d-80c4-46acb6f9b7b3")

harness: Any = None  # tests/clients/harness.py, imported in main()
ebats: Any = None  # the installed module, imported in install()


def log(text: str) -> None:
    print(text, flush=True)


def now_ms() -> int:
    """Wall clock in whole ms, truncated as ebats truncates created_at, so never later than it."""
    return time.time_ns() // 1_000_000


def task_id(event_id: str, event: str, task: str, topic: str = "demo") -> str:
    """The id of the task an event fans out into (docs/WIRE.md section 3)."""
    b = bytearray(uuid.uuid5(EBATS_NS, f"{event_id}\n{event}\n{task}\n{topic}").bytes)
    b[0:8] = uuid.UUID(event_id).bytes[0:8]
    b[6] = 0x80 | (b[6] & 0x0F)
    return str(uuid.UUID(bytes=bytes(b)))


def wait_for(d: Any, task_ids: List[str], timeout: float = 60.0) -> Dict[str, dict]:
    """The first result record of each task id, once all are there (AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        d.wait_results(0)  # raises if a daemon died
        found: Dict[str, dict] = {}
        for r in d.results():
            found.setdefault(r["task_id"], r)
        if all(t in found for t in task_ids):
            return {t: found[t] for t in task_ids}
        if time.monotonic() > deadline:
            missing = [t for t in task_ids if t not in found]
            raise AssertionError(f"no result for tasks {missing} after {timeout} s\n{d.logs()}")
        time.sleep(0.05)


def check_ok(record: dict, task: str, params: dict, trace: Optional[str] = None) -> None:
    assert record["status"] == "ok", record
    assert record["task"] == task and record["topic"] == "demo", record
    assert record["params"] == params, record
    if trace is not None:
        assert record.get("trace") == trace, record


def raises(exc: type, fn: Callable[[], Any], *fragments: str) -> str:
    """Calls fn, which must raise `exc` with every fragment in its message; returns the message."""
    try:
        fn()
    except exc as e:
        message = str(e)
        for fragment in fragments:
            assert fragment in message, f"{exc.__name__} message {message!r} lacks {fragment!r}"
        return message
    except Exception as e:  # noqa: BLE001 - report what was raised instead
        raise AssertionError(f"expected {exc.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc.__name__}, nothing was raised")


def run(command: List[str], cwd: Path, env: Dict[str, str]) -> str:
    p = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"{command} exited with {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p.stdout


def message_count(d: Any) -> int:
    """Messages waiting anywhere (every row of `ebatsctl stats --json`: pending, delayed, dead)."""
    rows = json.loads(d.ctl("stats", "--json"))
    return sum(row[k] or 0 for row in rows for k in ("pending", "delayed", "leased", "dead"))


# ---- the page docs/PYTHON.md ----

class Page:
    """The code blocks of docs/PYTHON.md: its shell commands and its Python blocks."""

    INSTALL = re.compile(r"^/usr/bin/python3 -m pip install .*--target \"\$TARGET\" clients/python$")
    EXAMPLE = re.compile(r"^PYTHONPATH=\"\$TARGET\" /usr/bin/python3 examples/python/(\w+\.py)$")

    def __init__(self, source: Path) -> None:
        text = (source / "docs" / "PYTHON.md").read_text()
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
        assert all(lang in ("sh", "python") for lang, _ in blocks), [lang for lang, _ in blocks]
        self.python = [code for lang, code in blocks if lang == "python"]
        commands = [line for lang, code in blocks if lang == "sh" for line in code.splitlines()
                    if line.strip() and not line.startswith("#")]
        installs = [c for c in commands if self.INSTALL.match(c)]
        assert len(installs) == 1, f"docs/PYTHON.md must show one install command, not {installs}"
        self.install = installs[0]
        self.examples = {self.EXAMPLE.match(c).group(1): c for c in commands if self.EXAMPLE.match(c)}
        unknown = [c for c in commands if c != self.install and not self.EXAMPLE.match(c)]
        assert not unknown, f"docs/PYTHON.md shows commands this test does not run: {unknown}"
        files = sorted(p.name for p in (source / "examples" / "python").glob("*.py"))
        assert sorted(self.examples) == files, f"examples documented {sorted(self.examples)} != present {files}"


# ---- 1. install ----

def install(source: Path, scratch: Path, page: Page) -> Dict[str, str]:
    """Runs the page's install command in a copy of the tree (pip builds in the source folder); imports the
    module from where it went. Returns the environment for the page's commands."""
    global ebats
    shutil.copytree(source / "clients" / "python", scratch / "clients" / "python",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    (scratch / "examples").mkdir()
    shutil.copytree(source / "examples" / "python", scratch / "examples" / "python")
    target = scratch / "site"
    env = dict(os.environ, TARGET=str(target))
    env.pop("PYTHONPATH", None)
    run(["bash", "-euc", page.install], scratch, env)
    assert (target / "ebats" / "__init__.py").is_file() and (target / "ebats" / "py.typed").is_file()
    assert list(target.glob("ebats-*.dist-info")), "no dist-info: not installed by pip"
    sys.path.insert(0, str(target))
    import ebats as installed

    ebats = installed
    assert Path(ebats.__file__).resolve().is_relative_to(target.resolve()), ebats.__file__
    log(f"ok 1: installed with `{page.install}` (TARGET={target}); imported {ebats.__file__}")
    return env


# ---- 2. the article's scenarios ----

def scenarios(build: Path) -> None:
    with harness.Daemons(build) as d:
        lib = str(d.library)
        with ebats.Publisher(d.config, library=lib) as p:
            assert re.fullmatch(r"\d+\.\d+\.\d+.*", p.library_version), p.library_version
            assert ebats.library_version(lib) == p.library_version

            paid = p.publish("order_paied", ORDER, trace="trace-paid")
            assert UUID_RE.fullmatch(paid), paid
            t0 = now_ms()
            created = p.publish("order_create", ORDER, trace="trace-create")
            t1 = now_ms()
            delayed = p.create_task("demo", "sendReceipt", {"order_id": 7}, delay=1.5, trace="trace-delay")
            t2 = now_ms()
            delayed_td = p.create_task("demo", "sendReceipt", {"order_id": 8}, delay=timedelta(milliseconds=1200))
            with p.batch() as b:
                batch_events = [b.add_event("order_paied", {"order_id": 100 + i}, trace="trace-batch")
                                for i in range(3)]
                sync = b.add_event("order_sync", {"order_id": 104}, trace="trace-batch")
                direct = b.add_task("demo", "orderAsync", {"order_id": 105}, trace="trace-batch")
                assert len(b) == 5
        ebats.configure(config=d.config, library=lib)
        created_directly = ebats.Task.create("demo", "orderAsync", {"order_id": 9})
        via_event = ebats.Event("order_paied").set_options({"order_id": 10}).publish(trace="trace-event")
        threaded: Dict[str, int] = {}  # threads sharing the default publisher

        def create_some(base: int) -> None:
            for i in range(5):
                threaded[ebats.Task.create("demo", "orderAsync", {"order_id": base + i})] = base + i

        threads = [threading.Thread(target=create_some, args=(1000 * (k + 1),)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(threaded) == 20, threaded

        want = {task_id(paid, "order_paied", "virtualShipping"): ("virtualShipping", ORDER, "trace-paid"),
                task_id(paid, "order_paied", "sendReceipt"): ("sendReceipt", ORDER, "trace-paid"),
                task_id(created, "order_create", "closeOrder"): ("closeOrder", ORDER, "trace-create"),
                delayed: ("sendReceipt", {"order_id": 7}, "trace-delay"),
                delayed_td: ("sendReceipt", {"order_id": 8}, None),
                created_directly: ("orderAsync", {"order_id": 9}, None),
                task_id(via_event, "order_paied", "virtualShipping"):
                    ("virtualShipping", {"order_id": 10}, "trace-event"),
                task_id(via_event, "order_paied", "sendReceipt"): ("sendReceipt", {"order_id": 10}, "trace-event"),
                task_id(sync, "order_sync", "orderAsync"): ("orderAsync", {"order_id": 104}, "trace-batch"),
                direct: ("orderAsync", {"order_id": 105}, "trace-batch")}
        for tid, order in threaded.items():
            want[tid] = ("orderAsync", {"order_id": order}, None)
        for i, e in enumerate(batch_events):
            for task in ("virtualShipping", "sendReceipt"):
                want[task_id(e, "order_paied", task)] = (task, {"order_id": 100 + i}, "trace-batch")
        results = wait_for(d, list(want))
        for tid, (task, params, trace) in want.items():
            check_ok(results[tid], task, params, trace)
        close = results[task_id(created, "order_create", "closeOrder")]
        assert close["started_at"] - t0 >= 2000, f"closeOrder ran early: {close['started_at'] - t0} ms after publish"
        assert close["due_at"] - t0 >= 2000, close
        r = results[delayed]
        assert r["started_at"] - t1 >= 1500 and r["due_at"] - t2 <= 1500, (r, t1, t2)
        r = results[delayed_td]
        assert r["due_at"] - r["started_at"] <= 0 and r["due_at"] - t2 >= 1200, (r, t2)
        ebats.configure()
        log(f"ok 2: {len(want)} tasks ran with status ok, their params and traces: order_paied -> virtualShipping"
            " + sendReceipt; order_create -> closeOrder no earlier than 2 s after the publish"
            f" ({close['started_at'] - t0} ms); create_task with delay 1.5 s and timedelta(1.2 s); a batch of"
            " 4 events and 1 task; Task.create and Event(...).set_options(...).publish(); 4 threads x 5"
            " Task.create sharing the default publisher")


FORK_SCRIPT = r"""
import json, os, sys, time
import ebats

before = ebats.Task.create("demo", "orderAsync", {"order_id": "F0"})  # opens the default publisher
own = ebats.Publisher()
batch = own.batch()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    out = {"child": ebats.Task.create("demo", "orderAsync", {"order_id": "F1"})}  # its own default publisher
    for name, call in (("own", lambda: own.publish("order_paied", {"order_id": "X"})),
                       ("batch", lambda: batch.add_event("order_paied", {"order_id": "X"}))):
        try:
            call()
            out[name] = "no exception"
        except ebats.ClosedError as e:
            out[name] = str(e)
    os.write(w, json.dumps(out).encode())
    os.close(w)
    sys.exit(0)  # a normal exit runs the finalizers: closing the parent's copies hung here
os.close(w)
deadline = time.monotonic() + 30
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print(json.dumps({"hung": True}))
        sys.exit(1)
    time.sleep(0.05)
child = json.loads(os.read(r, 65536) or b"{}")
after = ebats.Task.create("demo", "orderAsync", {"order_id": "F2"})  # the parent's connections still work
own_after = own.create_task("demo", "orderAsync", {"order_id": "F3"})
batch.close()
own.close()
print(json.dumps(dict(child, before=before, after=after, own_after=own_after, status=status)))
"""


def fork_check(build: Path, scratch: Path, env: Dict[str, str]) -> None:
    (scratch / "fork.py").write_text(FORK_SCRIPT)
    with harness.Daemons(build) as d:
        env = dict(daemon_env(d, env), PYTHONPATH=env["TARGET"])
        out = json.loads(run(["/usr/bin/python3", str(scratch / "fork.py")], scratch, env))
        assert out["status"] == 0, out
        for name in ("own", "batch"):
            assert "before a fork()" in out[name] and "open a new Publisher" in out[name], out
        ids = [out["before"], out["child"], out["after"], out["own_after"]]
        results = wait_for(d, ids)
        for tid, order in zip(ids, ("F0", "F1", "F2", "F3")):
            check_ok(results[tid], "orderAsync", {"order_id": order})
    log("ok fork: after fork() the child publishes through its own default publisher and exits normally (the"
        " parent's handles are forgotten, not closed); the parent's own Publisher and batch refuse the child"
        " with ClosedError; the parent's default and own publishers keep working")


# ---- 3. bad input ----

def bad_input(build: Path) -> None:
    with harness.Daemons(build, start=False) as d:
        d.ctl("setup")
        lib = str(d.library)
        p = ebats.Publisher(d.config, library=lib)
        p.publish("order_paied", ORDER)  # one good message, so the counts are known to count
        before = message_count(d)
        assert before == 1, f"stats count {before} messages after one publish"
        queued = None if harness.amqp_backend() else d.queued_envelopes()

        raises(ebats.ConfigError, lambda: ebats.Publisher("/nonexistent/ebats.yaml", library=lib),
               "ebats_publisher_open", "/nonexistent/ebats.yaml")
        raises(ebats.LibraryError, lambda: ebats.Publisher(d.config, library="/nonexistent/libebats.so"),
               "/nonexistent/libebats.so", "EBATS_LIBRARY")
        saved = os.environ.get("EBATS_LIBRARY")
        os.environ["EBATS_LIBRARY"] = "/nonexistent/from-env.so"
        try:
            raises(ebats.LibraryError, lambda: ebats.Publisher(d.config), "/nonexistent/from-env.so")
        finally:
            if saved is None:
                del os.environ["EBATS_LIBRARY"]
            else:
                os.environ["EBATS_LIBRARY"] = saved

        for params in (["order_id", 1], "order_id=1", 42):
            raises(ebats.ArgumentError, lambda: p.publish("order_paied", params), "must be a dict")
        for params in ({"x": object()}, {"x": {1, 2}}, {"x": math.nan}, {"x": "\ud800"}):
            raises(ebats.ArgumentError, lambda: p.publish("order_paied", params), "not JSON-serialisable")
        assert isinstance(ebats.ArgumentError(""), ValueError)
        raises(ebats.ArgumentError, lambda: p.publish("order\0paied", ORDER), "NUL")
        raises(ebats.ArgumentError, lambda: p.publish(b"order_paied", ORDER), "must be a str")  # type: ignore
        raises(ebats.ArgumentError, lambda: p.create_task("demo", "orderAsync", ORDER, delay=-1), "delay")
        raises(ebats.ArgumentError, lambda: p.create_task("demo", "orderAsync", ORDER, delay="1s"), "delay")
        big = {"blob": "x" * (1 << 20)}
        raises(ebats.PublishError, lambda: p.publish("order_paied", big), "ebats_publish_event", "limit")
        raises(ebats.PublishError, lambda: p.create_task("demo", "orderAsync", big), "ebats_enqueue_task", "limit")
        raises(ebats.PublishError, lambda: p.publish("bad name!", ORDER), "ebats_publish_event",
               "invalid event name 'bad name!'")
        raises(ebats.PublishError, lambda: p.publish("order_paied", ORDER, id="not-a-uuid"), "invalid event id")
        raises(ebats.PublishError, lambda: p.publish("order_paied", ORDER, id=str(uuid.uuid4()).upper()),
               "invalid event id")
        raises(ebats.PublishError, lambda: p.publish("order_paied", ORDER, trace="t" * 129), "trace")
        raises(ebats.PublishError, lambda: p.create_task("de.mo", "orderAsync", ORDER), "invalid topic")
        raises(ebats.PublishError, lambda: p.create_task("demo", "order Async", ORDER), "ebats_enqueue_task")

        b = p.batch()
        good = b.add_event("order_paied", {"order_id": 2})
        for bad in (lambda: b.add_event("bad name!", ORDER), lambda: b.add_event("order_paied", ["x"]),
                    lambda: b.add_event("order_paied", ORDER, id="nope"), lambda: b.add_event("order_paied", big),
                    lambda: b.add_task("de.mo", "orderAsync", ORDER), lambda: b.add_task("demo", "x", ORDER, delay=-1)):
            raises(ebats.EbatsError, bad)
            assert len(b) == 1, f"a refused add changed the batch: {len(b)} messages"
        b.commit()
        assert len(b) == 0
        b.close()
        raises(ebats.ClosedError, lambda: b.add_event("order_paied", ORDER), "closed")
        try:
            with p.batch() as dropped:
                dropped.add_event("order_paied", {"order_id": 3})
                raise KeyError("in the with block")
        except KeyError:
            pass
        raises(ebats.ClosedError, dropped.commit, "closed")
        open_batch = p.batch()
        open_batch.add_event("order_paied", {"order_id": 4})
        p.close()
        p.close()
        assert p.closed
        raises(ebats.ClosedError, lambda: p.publish("order_paied", ORDER), "closed", d.config)
        raises(ebats.ClosedError, lambda: p.create_task("demo", "orderAsync", ORDER), "closed")
        raises(ebats.ClosedError, p.batch, "closed")
        raises(ebats.ClosedError, open_batch.commit, "closed")

        after = message_count(d)
        assert after == before + 1, f"{after - before} messages appeared, expected only the batch's good one"
        if queued is not None:
            ids = [e["id"] for e in d.queued_envelopes()]
            assert sorted(ids) == sorted([e["id"] for e in queued] + [good]), ids
    log("ok 3: bad config path -> ConfigError, missing library (argument and EBATS_LIBRARY) -> LibraryError,"
        " params not a dict / not serialisable / NUL / bad delay -> ArgumentError, oversized (> 1 MiB),"
        " invalid names, non-UUID and uppercase event ids, long trace -> PublishError naming the C call,"
        " closed publisher and batch -> ClosedError; refused batch adds left the batch as it was, a batch"
        " whose with block raised and one closed with its publisher published nothing: exactly one message"
        " more in `ebatsctl stats --json`" + ("" if queued is None else " and in the SQLite tables"))


# ---- 4 and 5. idempotency and envelopes (SQLite) ----

def sqlite_envelopes(build: Path, source: Path) -> None:
    if harness.amqp_backend():
        log("skip 4, 5: idempotent re-publish and the envelope schema read SQLite's tables; not on RabbitMQ")
        return
    with harness.Daemons(build, start=False) as d:
        with ebats.Publisher(Path(d.config), library=d.library) as p:  # os.PathLike arguments too
            event_id = str(uuid.uuid4())
            assert p.publish("order_paied", ORDER, id=event_id) == event_id
            assert p.publish("order_paied", ORDER, id=event_id) == event_id
            with p.batch() as b:
                assert b.add_event("order_paied", ORDER, id=event_id) == event_id
            envs = d.queued_envelopes()
            assert [e["id"] for e in envs].count(event_id) == 1, envs
            log("ok 4: the same event id published three times (twice, then in a batch): one event queued")

            unicode_params = {"order_id": 10042, "note": "Grüße, 東京 😀", "nested": {"a": [1, 2.5, None, True]}}
            ids = {"unicode": p.publish("order_paied", unicode_params, trace="req-8c1f2b"),
                   "empty": p.publish("order_sync", {}),
                   "none": p.publish("order_sync"),
                   "task": p.create_task("demo", "orderAsync", {"order_id": 1}),
                   "delayed": p.create_task("demo", "closeOrder", {"order_id": 2}, delay=3, trace="t")}
            with p.batch() as b:
                ids["batch_event"] = b.add_event("order_create", {"order_id": 3})
                ids["batch_task"] = b.add_task("demo", "sendReceipt", {"order_id": 4}, delay=0.25)
        envs = {e["id"]: e for e in d.queued_envelopes()}
        e = envs[ids["unicode"]]
        assert e["params"] == unicode_params and e["trace"] == "req-8c1f2b" and e["kind"] == "event", e
        assert envs[ids["empty"]]["params"] == {} and envs[ids["none"]]["params"] == {}
        e = envs[ids["delayed"]]
        assert e["kind"] == "task" and e["due_at"] - e["created_at"] == 3000 and e["trace"] == "t", e
        e = envs[ids["batch_task"]]
        assert e["due_at"] - e["created_at"] == 250, e
        assert envs[ids["task"]]["due_at"] == envs[ids["task"]]["created_at"]
        if (source / "docs" / "envelope.schema.json").is_file():
            harness.validate_envelopes(list(envs.values()), source)
            log(f"ok 5: {len(envs)} envelopes written through the module (events, tasks, delayed, batch, unicode,"
                " empty params) validate against docs/envelope.schema.json and carry what was passed")
        else:
            log("ok 5 (partly): the envelopes carry what was passed; NOTE: docs/envelope.schema.json does not"
                " exist yet, so the schema validation was skipped")


# ---- the examples and the page ----

def daemon_env(d: Any, env: Dict[str, str]) -> Dict[str, str]:
    """env with the config and library of `d`, and what the harness put in os.environ (a broker password)."""
    return dict(os.environ, TARGET=env["TARGET"], EBATS_CONFIG=d.config, EBATS_LIBRARY=str(d.library))


def examples(build: Path, scratch: Path, env: Dict[str, str], page: Page) -> None:
    with harness.Daemons(build) as d:
        env = daemon_env(d, env)
        outputs = {}
        for name in ("close_unpaid_order.py", "fan_out_on_payment.py", "custom_scheduler.py"):
            t0 = now_ms()
            outputs[name] = (t0, UUID_RE.findall(run(["bash", "-euc", page.examples[name]], scratch, env)))
        assert set(outputs) == set(page.examples)
        t0, (created,) = outputs["close_unpaid_order.py"]
        _, (paid,) = outputs["fan_out_on_payment.py"]
        _, tasks = outputs["custom_scheduler.py"]
        assert len(tasks) == 3, tasks
        close = task_id(created, "order_create", "closeOrder")
        results = wait_for(d, [close, task_id(paid, "order_paied", "virtualShipping"),
                               task_id(paid, "order_paied", "sendReceipt"), *tasks])
        check_ok(results[close], "closeOrder", ORDER, "checkout-1")
        assert results[close]["started_at"] - t0 >= 2000
        check_ok(results[task_id(paid, "order_paied", "virtualShipping")], "virtualShipping", ORDER)
        check_ok(results[task_id(paid, "order_paied", "sendReceipt")], "sendReceipt", ORDER)
        for i, t in enumerate(tasks):
            check_ok(results[t], "orderAsync", {"order_id": f"FB13802039219331{2 + i}"})
    log(f"ok examples: ran {sorted(page.examples)} with the page's commands; closeOrder (after >= 2 s),"
        " virtualShipping + sendReceipt, and 3 orderAsync results are ok")


def page_python(build: Path, scratch: Path, env: Dict[str, str], page: Page) -> None:
    script = "\n".join(f"print('--- docs/PYTHON.md python block {i + 1}', flush=True)\n{code}"
                       for i, code in enumerate(page.python))
    (scratch / "page.py").write_text(script)
    with harness.Daemons(build) as d:
        env = dict(daemon_env(d, env), PYTHONPATH=env["TARGET"])
        out = run(["/usr/bin/python3", str(scratch / "page.py")], scratch, env)
        settled = wait_settled(d)
        bad = [r for r in settled if r["status"] != "ok"]
        assert not bad, f"docs/PYTHON.md's blocks made tasks that did not succeed: {bad}"
        dead = json.loads(d.ctl("dead", "list", "--json"))
        assert not dead, f"docs/PYTHON.md's blocks made dead letters: {dead}"
        assert "invalid event name 'order paied'" in out and "must be a dict" in out, out
    log(f"ok page: the {len(page.python)} python blocks of docs/PYTHON.md ran in order against the daemons; all"
        f" {len(settled)} tasks they made ran ok, no dead letters, the error examples print the messages shown")


def wait_settled(d: Any, timeout: float = 60.0) -> List[dict]:
    """The result records once nothing waits in the broker and no record came for 2 s."""
    deadline = time.monotonic() + timeout
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        records = d.wait_results(0)
        if len(records) != count or message_count(d) != 0:
            count, quiet_since = len(records), time.monotonic()
        elif time.monotonic() - quiet_since >= 2.0:
            return records
        time.sleep(0.2)
    raise AssertionError(f"the broker did not settle in {timeout} s\n{d.logs()}")


def main() -> int:
    global harness
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True, help="the build folder (bin/, libebats/, plugins/)")
    parser.add_argument("--source", required=True, help="the source tree")
    args = parser.parse_args()
    build, source = Path(args.build).resolve(), Path(args.source).resolve()
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, str(source / "tests" / "clients"))
    import harness as h

    harness = h
    log(f"backend: {'RabbitMQ' if harness.amqp_backend() else 'SQLite'}")
    page = Page(source)
    scratch = Path(tempfile.mkdtemp(prefix="ebats-python-"))
    try:
        env = install(source, scratch, page)
        scenarios(build)
        fork_check(build, scratch, env)
        bad_input(build)
        sqlite_envelopes(build, source)
        examples(build, scratch, env, page)
        page_python(build, scratch, env, page)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
