#!/usr/bin/python3
"""The PHP package clients/php/ (ebats/ebats) end to end, with the real daemons.

    /usr/bin/python3 tests/clients/test_php_client.py --build build --source .

On SQLite, or on the private RabbitMQ node of ctest with EBATS_TEST_BACKEND=amqp
and EBATS_TEST_AMQP_NODE_DIR (checks that read SQLite's queues skip themselves
there). It checks, printing each:

 1. the package installs into a new composer project offline, by running the
    `sh` blocks of docs/PHP.md; composer.json validates; the FFI declarations
    in Native.php are those of publisher_c.h;
 2. the article's examples: order_paied fans out to virtualShipping and
    sendReceipt with its params, order_create's closeOrder never runs before
    its 2 s delay, Task::create now and delayed, a batch; traces reach the
    result records; the returned ids are the ids in the results; after
    fork() the child opens its own default publisher;
 3. bad input throws the right exception class with the library's message and
    publishes nothing (a refused batch add leaves the batch as it was);
 4. (SQLite) one event id published twice queues one event;
 5. (SQLite) envelopes published from PHP validate against
    docs/envelope.schema.json;
 6. every program in examples/php/ runs and its results are right;
 7. docs: every `php` block of docs/PHP.md, docs/MIGRATION.md and
    clients/php/README.md runs against daemons started with MIGRATION.md's
    `sh` block and leaves the results its `<!-- test: expect TASK... -->` line
    names (and prints what its `// prints:` comments say); the examples of 6
    run there too; MIGRATION.md's `cpp` block is verbatim in
    plugins/examples/shop.cpp, its `json` record has the fields real records
    have, and its `yaml` config passes ebats-scheduler --check-config.

Standard library only (python3-jsonschema for check 5); php and composer from
Debian. Exit 0 = pass.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
EBATS_NS = uuid.UUID("55d30b06-e5f9-4a5d-80c4-46acb6f9b7b3")
ORDER = "FB138020392193312"


def note(text: str) -> None:
    print(text, flush=True)


def check(what: str) -> None:
    note(f"ok   {what}")


def task_id(event_id: str, event: str, task: str, topic: str = "demo") -> str:
    """The id the scheduler gives the task of a registration (docs/WIRE.md §3)."""
    b = bytearray(uuid.uuid5(EBATS_NS, f"{event_id}\n{event}\n{task}\n{topic}").bytes)
    b[0:8] = uuid.UUID(event_id).bytes[0:8]
    b[6] = 0x80 | (b[6] & 0x0F)
    return str(uuid.UUID(bytes=bytes(b)))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- docs


def blocks(md: Path) -> list[tuple[str, str, str]]:
    """(language, text, the `<!-- test: ... -->` annotation just before it or "") of each fenced block."""
    out = []
    lines = md.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        annotation = ""
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0:
            a = re.match(r"^<!-- test: (.*) -->$", lines[j].strip())
            annotation = a.group(1) if a else ""
        body = []
        i += 1
        while not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        out.append((m.group(1), "\n".join(body) + "\n", annotation))
        i += 1
    return out


# ---------------------------------------------------------------- PHP side


class Project:
    """A composer project in a temp folder with ebats/ebats required as docs/PHP.md says."""

    def __init__(self, source: Path, library: Path):
        self.source = source
        self.root = Path(tempfile.mkdtemp(prefix="ebats-php-"))
        self.dir = self.root / "shop"
        self.dir.mkdir()
        self.extra_env = dict(COMPOSER_HOME=str(self.root / "composer-home"),
                              COMPOSER_CACHE_DIR=str(self.root / "composer-cache"), COMPOSER_ALLOW_SUPERUSER="1",
                              COMPOSER_NO_AUDIT="1", EBATS_SRC=str(source), EBATS_LIBRARY=str(library))
        self.count = 0

    @property
    def env(self) -> dict[str, str]:
        # Read os.environ each time: the harness sets EBATS_BROKER_PASSWORD for RabbitMQ.
        env = dict(os.environ, **self.extra_env)
        env.pop("EBATS_CONFIG", None)
        return env

    def cleanup(self) -> None:
        if not os.environ.get("EBATS_TEST_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def sh(self, script: str) -> str:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.dir, env=self.env,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"shell failed ({r.returncode}):\n{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r.stdout

    def php(self, code: str, config: str | None, name: str | None = None, expect_rc: int = 0) -> str:
        """Runs PHP code as a file in the project folder (vendor/autoload.php beside it); its stdout."""
        self.count += 1
        path = self.dir / (name or f"script{self.count}.php")
        path.write_text(code)
        env = dict(self.env)
        if config:
            env["EBATS_CONFIG"] = config
        r = subprocess.run(["php", str(path)], cwd=self.dir, env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != expect_rc or "Fatal error" in r.stdout + r.stderr or "Warning" in r.stdout + r.stderr:
            raise AssertionError(f"php {path.name} exited with {r.returncode}\n--- code\n{code}\n--- stdout\n"
                                 f"{r.stdout}\n--- stderr\n{r.stderr}")
        return r.stdout


PRELUDE = "<?php\nrequire __DIR__ . '/vendor/autoload.php';\n"


# ---------------------------------------------------------------- results


class Results:
    """Result records by task id, for one set of daemons; remembers which ids a check expected."""

    def __init__(self, d: harness.Daemons):
        self.d = d
        self.expected: set[str] = set()

    def wait(self, ids: list[str], timeout: float = 60.0) -> dict[str, dict]:
        """The final record of each id once every one is there; each must be ok on its first attempt."""
        self.expected.update(ids)
        deadline = time.monotonic() + timeout
        while True:
            by_id: dict[str, list[dict]] = collections.defaultdict(list)
            for r in self.d.results():
                by_id[r["task_id"]].append(r)
            if all(i in by_id for i in ids):
                break
            if time.monotonic() > deadline:
                missing = [i for i in ids if i not in by_id]
                raise AssertionError(f"no result for {missing} after {timeout} s\n{self.d.logs()}")
            self.d.wait_results(0)  # raises if a daemon died
            time.sleep(0.05)
        out = {}
        for i in ids:
            recs = by_id[i]
            assert len(recs) == 1 and recs[0]["status"] == "ok" and recs[0]["attempt"] == 0, f"{i}: {recs}"
            out[i] = recs[0]
        return out

    def nothing_else(self) -> None:
        """No record of a task nobody expected, and no dead letter, a moment after the last one."""
        time.sleep(1.5)
        extra = [r for r in self.d.results() if r["task_id"] not in self.expected]
        assert not extra, f"unexpected result records: {extra}"
        dead = json.loads(self.d.ctl("dead", "list", "--json"))
        assert dead == [], f"dead letters: {dead}"


def expect_event(results: Results, event_id: str, event: str, tasks: list[str], params: dict,
                 trace: str | None = None, not_before: int | None = None) -> None:
    recs = results.wait([task_id(event_id, event, t) for t in tasks])
    for t, r in zip(tasks, recs.values()):
        assert r["task"] == t and r["topic"] == "demo" and r["params"] == params, r
        assert r.get("trace") == trace, r
        if not_before is not None:
            assert r["due_at"] >= not_before and r["started_at"] >= not_before, (not_before, r)


# ---------------------------------------------------------------- 1. install


def install(project: Project, source: Path) -> None:
    sh = [text for lang, text, _ in blocks(source / "docs" / "PHP.md") if lang == "sh"]
    assert len(sh) == 2 and "composer require" in sh[0] and "version()" in sh[1], "docs/PHP.md: sh blocks changed"
    project.sh(sh[0])
    assert (project.dir / "vendor" / "autoload.php").exists()
    lock = json.loads((project.dir / "composer.lock").read_text())
    assert [p["name"] for p in lock["packages"]] == ["ebats/ebats"], lock["packages"]
    check("composer requires ebats/ebats from a path repository, offline, as docs/PHP.md says")
    version = project.sh(sh[1]).strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version), version
    check(f"docs/PHP.md's version check prints libebats' version ({version})")
    project.sh(f"composer validate --no-check-publish --no-interaction '{source}/clients/php/composer.json'")
    check("clients/php/composer.json validates")


def cdef_matches_header(project: Project, source: Path) -> None:
    """The declarations Native.php gives FFI::cdef are the header's, statement for statement."""
    def statements(text: str) -> list[str]:
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
        text = text.replace("EBATS_C_EXPORT", "").replace('extern "C" {', "")
        text = re.sub(r"\s+", " ", text)
        return sorted(s.strip() for s in text.split(";") if s.strip() and s.strip() != "}")

    header = statements((source / "libebats/include/ebats/publisher_c.h").read_text())
    cdef = statements(project.php(PRELUDE + "echo Ebats\\Native::CDEF;", None))
    assert cdef == header, f"Native::CDEF differs from publisher_c.h:\n{set(cdef) ^ set(header)}"
    check(f"Native::CDEF declares exactly the {len(header)} declarations of publisher_c.h")


# ---------------------------------------------------------------- 2. the article


ARTICLE = PRELUDE + r"""
use Ebats\Client;
use Ebats\Event;
use Ebats\Task;

$out = [];
$event = new Event('order_paied');
$event->setOptions(['order_id' => 'FB138020392193312']);
$out['paied'] = $event->publish();

$out['create_t0'] = (int) floor(microtime(true) * 1000);
$out['create'] = (new Event('order_create'))->setOptions(['order_id' => 'FB138020392193312'])
    ->setTrace('trace-create')->publish();

$msg = ['order_id' => 'FB138020392193312', 'buyer' => '张三', 'url' => 'https://shop/x'];
$out['task'] = Task::create('demo', 'orderAsync', $msg);
$out['delayed_t0'] = (int) floor(microtime(true) * 1000);
$out['delayed'] = Task::create('demo', 'orderAsync', ['order_id' => 'FB2'], 1.5, 'trace-delayed');

$batch = Client::publisher()->batch();
$out['batch_event'] = $batch->addEvent('order_paied', ['order_id' => 'B1'], null, 'trace-batch');
$out['batch_t0'] = (int) floor(microtime(true) * 1000);
$out['batch_task'] = $batch->addTask('demo', 'orderAsync', ['order_id' => 'B2'], 1);
$out['batch_size'] = count($batch);
$out['committed'] = $batch->commit();
$out['after'] = count($batch);
echo json_encode($out);
"""


def article(project: Project, d: harness.Daemons, results: Results) -> None:
    out = json.loads(project.php(ARTICLE, d.config))
    for key in ("paied", "create", "task", "delayed", "batch_event", "batch_task"):
        assert re.fullmatch(UUID, out[key]), out
    expect_event(results, out["paied"], "order_paied", ["virtualShipping", "sendReceipt"], {"order_id": ORDER})
    check("Event('order_paied')->setOptions([...])->publish(): virtualShipping and sendReceipt ok with its params, "
          "task ids derived from the returned event id")
    r = results.wait([out["task"]])[out["task"]]
    assert r["task"] == "orderAsync" and r["params"] == {"order_id": ORDER, "buyer": "张三", "url": "https://shop/x"}
    check("Task::create('demo', 'orderAsync', $msg): ok, task_id = the returned id, params unchanged (UTF-8, slashes)")
    r = results.wait([out["delayed"]])[out["delayed"]]
    assert r["started_at"] >= out["delayed_t0"] + 1500 and r["trace"] == "trace-delayed", (out, r)
    check("Task::create(..., 1.5, trace): not started before 1.5 s, trace in the result")
    expect_event(results, out["create"], "order_create", ["closeOrder"], {"order_id": ORDER}, "trace-create",
                 not_before=out["create_t0"] + 2000)
    check("order_create: closeOrder not started before 2 s after the publish, trace in the result")
    assert (out["batch_size"], out["committed"], out["after"]) == (2, 2, 0), out
    expect_event(results, out["batch_event"], "order_paied", ["virtualShipping", "sendReceipt"], {"order_id": "B1"},
                 "trace-batch")
    r = results.wait([out["batch_task"]])[out["batch_task"]]
    assert r["params"] == {"order_id": "B2"} and r["started_at"] >= out["batch_t0"] + 1000, r
    check("a batch of an event and a delayed task: count 2, commit() returns 2 and empties it, all ran")


FORK = PRELUDE + r'''
use Ebats\Client;
use Ebats\Task;

$parent = Client::publisher();
$out = ['before' => Task::create('demo', 'orderAsync', ['order_id' => 'F0'])];
$pid = pcntl_fork();
if ($pid === 0) {
    // The child must not use (or close) the parent's connection: it gets its own.
    $child = Client::publisher();
    echo json_encode(['child' => Task::create('demo', 'orderAsync', ['order_id' => 'F1']),
                      'own' => $child !== $parent]), "\n";
    exit(0);
}
pcntl_waitpid($pid, $status);
$out['child_ok'] = pcntl_wifexited($status) && pcntl_wexitstatus($status) === 0;
$out['after'] = Task::create('demo', 'orderAsync', ['order_id' => 'F2']);   // the parent's connection still works
$out['same'] = Client::publisher() === $parent;
echo json_encode($out), "\n";
'''


def fork(project: Project, d: harness.Daemons, results: Results) -> None:
    if subprocess.run(["php", "-r", "exit(function_exists('pcntl_fork') ? 0 : 1);"]).returncode != 0:
        note("skip fork check: PHP has no pcntl")
        return
    lines = [json.loads(line) for line in project.php(FORK, d.config).splitlines()]
    child = next(x for x in lines if "child" in x)
    parent = next(x for x in lines if "before" in x)
    assert child["own"] and parent["child_ok"] and parent["same"], lines
    recs = results.wait([parent["before"], child["child"], parent["after"]])
    assert [r["params"]["order_id"] for r in recs.values()] == ["F0", "F1", "F2"], recs
    check("after fork() the child opens its own default publisher; the parent's keeps working")


# ---------------------------------------------------------------- 3. bad input


BAD_INPUT = PRELUDE + r"""
use Ebats\Client;
use Ebats\Event;
use Ebats\Publisher;
use Ebats\Task;

$cases = [];
function attempt(string $case, callable $f): void {
    global $cases;
    try {
        $f();
        $cases[$case] = ['class' => null, 'message' => 'no exception'];
    } catch (Throwable $e) {
        $cases[$case] = ['class' => get_class($e), 'message' => $e->getMessage(),
                         'runtime' => $e instanceof RuntimeException && $e instanceof \Ebats\EbatsException];
    }
}
$ok = ['order_id' => 'FB138020392193312'];

Client::configure('/nonexistent/ebats.yaml');
attempt('config path', fn() => Task::create('demo', 'orderAsync', $ok));
Client::configure();
attempt('library path', fn() => Publisher::open(null, '/nonexistent/libebats.so.0'));

$p = Publisher::open();
$open_batch = $p->batch();
$p->close();
attempt('closed publish', fn() => $p->publish('order_paied', $ok));
attempt('closed task', fn() => $p->createTask('demo', 'orderAsync', $ok));
attempt('closed batch', fn() => $p->batch());
attempt('batch of closed', fn() => $open_batch->addEvent('order_paied', $ok));

attempt('INF', fn() => Task::create('demo', 'orderAsync', ['order_id' => 'x', 'total' => INF]));
attempt('NAN', fn() => (new Event('order_paied'))->setOptions(['order_id' => NAN])->publish());
attempt('resource', fn() => Task::create('demo', 'orderAsync', ['order_id' => 'x', 'f' => STDIN]));
attempt('bad UTF-8', fn() => Task::create('demo', 'orderAsync', ['order_id' => "\xff\xfe"]));
attempt('list', fn() => (new Event('order_paied'))->setOptions(['FB1', 'FB2'])->publish());
$big = ['order_id' => 'x', 'blob' => str_repeat('x', 1100000)];
attempt('oversized event', fn() => (new Event('order_paied'))->setOptions($big)->publish());
attempt('oversized task', fn() => Task::create('demo', 'orderAsync', $big));
attempt('event name', fn() => (new Event('order paied!'))->setOptions($ok)->publish());
attempt('event name NUL', fn() => (new Event("order_paied\0x"))->setOptions($ok)->publish());
attempt('task name', fn() => Task::create('demo', 'order Async', $ok));
attempt('topic', fn() => Task::create('de.mo', 'orderAsync', $ok));
attempt('event id', fn() => (new Event('order_paied'))->setOptions($ok)->setId('FB138020392193312')->publish());
attempt('uppercase id', fn() => (new Event('order_paied'))->setOptions($ok)
    ->setId('0B7E4A52-9C1F-4D7E-8A34-2F6C1D9E0A11')->publish());
attempt('trace', fn() => (new Event('order_paied'))->setOptions($ok)->setTrace(str_repeat('t', 129))->publish());
attempt('negative delay', fn() => Task::create('demo', 'orderAsync', $ok, -1));
attempt('INF delay', fn() => Task::create('demo', 'orderAsync', $ok, INF));

$batch = Client::publisher()->batch();
$good = $batch->addEvent('order_paied', ['order_id' => 'BATCH']);
attempt('batch event name', fn() => $batch->addEvent('order paied', $ok));
attempt('batch list', fn() => $batch->addTask('demo', 'orderAsync', [1, 2]));
attempt('batch event id', fn() => $batch->addEvent('order_paied', $ok, 'nope'));
attempt('batch oversized', fn() => $batch->addTask('demo', 'orderAsync', $big));
$size = count($batch);
$batch->commit();
$marker = Task::create('demo', 'orderAsync', ['order_id' => 'MARKER']);
echo json_encode(['cases' => $cases, 'batch_event' => $good, 'size' => $size, 'marker' => $marker]);
"""

# case -> (exception class, substrings of its message)
BAD_EXPECT = {
    "config path": ("ConfigException", ["ebats_publisher_open", "/nonexistent/ebats.yaml", "cannot read config file"]),
    "library path": ("ConfigException", ["cannot load libebats", "/nonexistent/libebats.so.0"]),
    "closed publish": ("ClosedException", ["is closed"]),
    "closed task": ("ClosedException", ["is closed"]),
    "closed batch": ("ClosedException", ["is closed"]),
    "batch of closed": ("ClosedException", ["is closed"]),
    "INF": ("ParamsException", ["Inf and NaN cannot be JSON encoded"]),
    "NAN": ("ParamsException", ["Inf and NaN cannot be JSON encoded"]),
    "resource": ("ParamsException", ["Type is not supported"]),
    "bad UTF-8": ("ParamsException", ["Malformed UTF-8"]),
    "list": ("ParamsException", ["JSON object", "list"]),
    "oversized event": ("PublishException", ["ebats_publish_event", "limit 1048576"]),
    "oversized task": ("PublishException", ["ebats_enqueue_task", "limit 1048576"]),
    "event name": ("PublishException", ["ebats_publish_event", "invalid event name 'order paied!'"]),
    "event name NUL": ("PublishException", ["NUL byte"]),
    "task name": ("PublishException", ["ebats_enqueue_task", "'order Async'"]),
    "topic": ("PublishException", ["ebats_enqueue_task", "invalid topic 'de.mo'"]),
    "event id": ("PublishException", ["invalid event id 'FB138020392193312'", "UUID"]),
    "uppercase id": ("PublishException", ["invalid event id", "lowercase UUID"]),
    "trace": ("PublishException", ["trace", "128 bytes"]),
    "negative delay": ("PublishException", ["delay must not be negative"]),
    "INF delay": ("PublishException", ["finite"]),
    "batch event name": ("PublishException", ["ebats_batch_add_event", "invalid event name 'order paied'"]),
    "batch list": ("ParamsException", ["JSON object"]),
    "batch event id": ("PublishException", ["ebats_batch_add_event", "invalid event id 'nope'"]),
    "batch oversized": ("PublishException", ["ebats_batch_add_task", "limit 1048576"]),
}


def bad_input(project: Project, d: harness.Daemons, results: Results) -> None:
    out = json.loads(project.php(BAD_INPUT, d.config))
    cases = out["cases"]
    assert set(cases) == set(BAD_EXPECT), set(cases) ^ set(BAD_EXPECT)
    for case, (cls, parts) in BAD_EXPECT.items():
        got = cases[case]
        assert got["class"] == "Ebats\\" + cls and got["runtime"], f"{case}: {got}"
        for part in parts:
            assert part in got["message"], f"{case}: {part!r} not in {got['message']!r}"
    check(f"{len(cases)} kinds of bad input throw the right Ebats\\* exception (a \\RuntimeException) "
          "with the library's message")
    assert out["size"] == 1, out
    expect_event(results, out["batch_event"], "order_paied", ["virtualShipping", "sendReceipt"], {"order_id": "BATCH"})
    results.wait([out["marker"]])
    results.nothing_else()
    check("refused batch adds left the batch as it was; nothing of any bad input was published (no other result, "
          "no dead letter)")


# ---------------------------------------------------------------- 4 and 5. SQLite queues


QUEUED = PRELUDE + r"""
use Ebats\Client;
use Ebats\Event;
use Ebats\Task;

$id = Client::newEventId();
$event = (new Event('order_paied'))->setOptions(['order_id' => 'FB138020392193312'])->setId($id)->setTrace('t-1');
$out = ['id' => $id, 'first' => $event->publish(), 'second' => $event->publish()];
$out['empty'] = Client::publisher()->publish('order_sync', []);
$out['t0'] = (int) floor(microtime(true) * 1000);
$out['task'] = Task::create('demo', 'orderAsync', ['order_id' => 'FB1', 'nested' => new stdClass(), 'list' => []],
                            2.5, 't-2');
$batch = Client::publisher()->batch();
$out['batch_event'] = $batch->addEvent('order_create', ['order_id' => 7]);
$out['batch_task'] = $batch->addTask('demo', 'closeOrder', ['order_id' => 8]);
$batch->commit();
echo json_encode($out);
"""


def sqlite_queues(project: Project, build: Path, source: Path) -> None:
    with harness.Daemons(build, start=False) as d:
        out = json.loads(project.php(QUEUED, d.config))
        envs = {e["id"]: e for e in d.queued_envelopes()}
        assert out["first"] == out["second"] == out["id"], out
        assert uuid.UUID(out["id"]).version == 7, out["id"]
        assert [e["id"] for e in d.queued_envelopes()].count(out["id"]) == 1
        assert envs[out["id"]]["trace"] == "t-1", envs[out["id"]]
        check("the same event id published twice: one event queued (Client::newEventId() is a UUIDv7)")
        assert envs[out["empty"]]["params"] == {}, envs[out["empty"]]
        check("empty PHP array params are sent as {}")
        t = envs[out["task"]]
        assert t["kind"] == "task" and t["due_at"] - t["created_at"] == 2500 and t["trace"] == "t-2", t
        assert t["params"] == {"order_id": "FB1", "nested": {}, "list": []}, t
        assert t["created_at"] >= out["t0"], t
        check("Task::create with 2.5 s: due_at = created_at + 2500 ms, trace, nested {} and [] kept")
        assert out["batch_event"] in envs and out["batch_task"] in envs and len(envs) == 5, envs
        schema = source / "docs" / "envelope.schema.json"
        if schema.exists():
            harness.validate_envelopes(list(envs.values()), source)
            check(f"the {len(envs)} envelopes PHP published validate against docs/envelope.schema.json")
        else:
            note("skip envelope schema check: docs/envelope.schema.json does not exist yet")


# ---------------------------------------------------------------- 6. examples/php


def examples(project: Project, d: harness.Daemons, results: Results, source: Path) -> None:
    files = sorted((source / "examples" / "php").iterdir())
    checks = {"close_unpaid_order.php": example_close, "fan_out_on_payment.php": example_fan_out,
              "custom_scheduler.php": example_custom_scheduler}
    unknown = [f.name for f in files if f.name not in checks]
    assert not unknown, f"examples/php/ has files this test does not run and check: {unknown}"
    for f in files:
        t0 = now_ms()
        out = project.php(f.read_text(), d.config, name=f.name)
        checks[f.name](out, results, t0)
        check(f"examples/php/{f.name} runs with EBATS_CONFIG; its results are right")


def example_close(out: str, results: Results, t0: int) -> None:
    event_id = re.fullmatch(rf"order_create published: ({UUID})\n", out).group(1)
    expect_event(results, event_id, "order_create", ["closeOrder"], {"order_id": ORDER}, "checkout-1",
                 not_before=t0 + 2000)


def example_fan_out(out: str, results: Results, t0: int) -> None:
    event_id = re.fullmatch(rf"order_paied published: ({UUID})\n", out).group(1)
    expect_event(results, event_id, "order_paied", ["virtualShipping", "sendReceipt"], {"order_id": ORDER})


def example_custom_scheduler(out: str, results: Results, t0: int) -> None:
    msgs = [json.loads(m) for m in re.findall(r"^ \[shzf\.order\.WAIT_SELLER_SEND_GOODS\] (.*)$", out, re.M)]
    ids = re.findall(rf"^orderAsync created: ({UUID})$", out, re.M)
    delayed = re.findall(rf"^orderAsync created \(in 2 s\): ({UUID})$", out, re.M)
    assert len(msgs) == len(ids) == 3 and len(delayed) == 1, out
    recs = results.wait(ids + delayed)
    for i, m in zip(ids, msgs):
        assert recs[i]["task"] == "orderAsync" and recs[i]["params"] == m, (m, recs[i])
    assert recs[delayed[0]]["started_at"] >= t0 + 2000, recs[delayed[0]]


# ---------------------------------------------------------------- 7. docs


def start_as_migration_shows(d: harness.Daemons, source: Path) -> None:
    """Starts the daemons with the command lines of docs/MIGRATION.md's sh block (the test's config)."""
    sh = [text for lang, text, _ in blocks(source / "docs" / "MIGRATION.md") if lang == "sh"]
    assert len(sh) == 1, "docs/MIGRATION.md: expected one sh block (the daemons)"
    for line in sh[0].splitlines():
        words = line.split()
        assert words[0] in ("ebats-scheduler", "ebats-ntask-worker", "ebats-dtask-worker"), line
        args = [d.config if w == "/etc/ebats/ebats.yaml" else w for w in words[1:]]
        log = open(d.dir / f"{words[0]}.log", "wb")
        d.procs.append(subprocess.Popen([str(d.bin / words[0]), *args], stdout=log, stderr=subprocess.STDOUT))
    check("the daemons started with docs/MIGRATION.md's command lines")


def docs_php(project: Project, d: harness.Daemons, source: Path, config_copy: Path) -> dict:
    """Runs every php block of the PHP docs; returns a record of MIGRATION's producer block."""
    shutil.copy(d.config, config_copy)  # for Client::configure(__DIR__ . '/ebats.yaml')
    sample = None
    for doc in ("docs/PHP.md", "docs/MIGRATION.md", "clients/php/README.md"):
        n = 0
        for lang, text, annotation in blocks(source / doc):
            if lang != "php":
                continue
            n += 1
            where = f"{doc} php block {n}"
            m = re.fullmatch(r"expect (.*)", annotation)
            assert m, f"{where}: no <!-- test: expect TASK... --> line before it"
            want = [] if m.group(1) == "nothing" else m.group(1).split()
            code = text if text.startswith("<?php") else PRELUDE + text
            before = len(d.results())
            out = project.php(code, d.config)
            prints = re.findall(r"// prints: (.*)$", text, re.M)
            if prints:
                assert out.splitlines() == prints, f"{where} printed:\n{out}\nits comments say:\n{prints}"
            records = d.wait_results(before + len(want), timeout=60)
            time.sleep(1.0)  # anything more it caused would show now
            records = d.results()[before:]
            got = collections.Counter(r["task"] for r in records)
            assert got == collections.Counter(want), f"{where}: results {got}, expected {want}\n{records}"
            bad = [r for r in records if r["status"] != "ok"]
            assert not bad, f"{where}: {bad}"
            if doc == "docs/MIGRATION.md" and want == ["virtualShipping", "sendReceipt"]:
                sample = records[0]
            check(f"{where} runs; results: {' '.join(want) or 'none'}" + (f"; prints {len(prints)} lines" if prints else ""))
    assert json.loads(d.ctl("dead", "list", "--json")) == []
    assert sample is not None
    return sample


def docs_migration_static(build: Path, source: Path, record: dict) -> None:
    md = blocks(source / "docs" / "MIGRATION.md")
    shop = (source / "plugins" / "examples" / "shop.cpp").read_text()
    cpp = [text for lang, text, _ in md if lang == "cpp"]
    assert cpp and all(c in shop for c in cpp), "docs/MIGRATION.md: a cpp block is not verbatim in shop.cpp"
    check("docs/MIGRATION.md's cpp block is verbatim in plugins/examples/shop.cpp")
    [sample] = [json.loads(text) for lang, text, _ in md if lang == "json"]
    assert list(sample) == list(record), f"sample fields {list(sample)}, a real record's {list(record)}"
    check("docs/MIGRATION.md's result line has the fields, in the order, of a real record")
    [yaml] = [text for lang, text, _ in md if lang == "yaml"]
    plugins = next(p for p in (build / "plugins", build / "plugins" / "examples") if (p / "shop.so").exists())
    with tempfile.TemporaryDirectory(prefix="ebats-php-yaml-") as tmp:
        config = Path(tmp, "ebats.yaml")
        config.write_text(yaml.replace("sqlite:///var/lib/ebats/ebats.db", f"sqlite://{tmp}/ebats.db")
                          .replace("/usr/lib/ebats/plugins", str(plugins))
                          .replace("/var/log/ebats/results.jsonl", f"{tmp}/results.jsonl"))
        r = subprocess.run([str(build / "bin" / "ebats-scheduler"), "--config", str(config), "--check-config"],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"docs/MIGRATION.md's yaml:\n{r.stdout}{r.stderr}"
    check("docs/MIGRATION.md's yaml passes ebats-scheduler --check-config (paths pointed at the build)")


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    args = ap.parse_args()
    build, source = args.build.resolve(), args.source.resolve()
    for tool in ("php", "composer"):
        if not shutil.which(tool):
            note(f"FAIL {tool} is not installed (scripts/install-deps.sh installs php-cli and composer)")
            return 1
    note(f"backend: {'RabbitMQ' if harness.amqp_backend() else 'SQLite'}")
    project = Project(source, build / "libebats" / "libebats.so.0")
    try:
        install(project, source)
        cdef_matches_header(project, source)
        with harness.Daemons(build) as d:
            results = Results(d)
            article(project, d, results)
            fork(project, d, results)
            bad_input(project, d, results)
        if harness.amqp_backend():
            note("skip (SQLite only) same event id twice -> one queued event; envelope schema of queued envelopes")
        else:
            sqlite_queues(project, build, source)
        with harness.Daemons(build, start=False) as d:
            start_as_migration_shows(d, source)
            results = Results(d)
            examples(project, d, results, source)
            results.nothing_else()
            record = docs_php(project, d, source, project.dir / "ebats.yaml")
        docs_migration_static(build, source, record)
    except AssertionError as e:
        note(f"FAIL {e}")
        return 1
    finally:
        project.cleanup()
    note("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
