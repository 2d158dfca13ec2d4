#!/usr/bin/python3
"""docs/envelope.schema.json against what libebats writes and what it refuses.

    test_envelope_schema.py --build BUILD --source SOURCE

1. The schema is a valid JSON Schema (draft 2020-12).
2. The examples in docs/WIRE.md validate.
3. Every envelope libebats wrote in a real run validates: events published
   with ebatsctl (with an id and a trace), a task enqueued directly with a
   delay, the tasks the scheduler fanned out, a retry waiting with its
   history, and dead-lettered bodies. Read from the SQLite file (the
   encoding is the same on RabbitMQ).
4. Envelopes WIRE.md says ebats refuses are refused by the schema too, so it
   is not merely permissive.
The PHP and Python client tests validate what they publish the same way.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Daemons, validate_envelopes  # noqa: E402


def wire_examples(source: Path) -> list[dict]:
    text = (source / "docs" / "WIRE.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def task_ids_follow_section_3(source: Path, examples: list[dict]) -> int:
    """Every task example made from an event (it names its parent) has the id that the Python sample of
    WIRE.md §3 computes, run here as the page shows it. Returns how many were checked."""
    text = (source / "docs" / "WIRE.md").read_text()
    samples = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def task_id" in b]
    assert len(samples) == 1, "docs/WIRE.md §3 lost its Python task_id sample"
    scope: dict = {}
    exec(samples[0], scope)
    checked = 0
    for e in examples:
        if e.get("kind") == "task" and "parent" in e and "event" in e:
            want = scope["task_id"](e["parent"], e["event"], e["task"], e["topic"])
            assert e["id"] == want, f"docs/WIRE.md: the task example's id {e['id']} is not its §3 id {want}"
            checked += 1
    return checked


def written_by_libebats(build: Path) -> list[dict]:
    with Daemons(build, start=False) as d:
        d.ctl("publish", "order_paied", '{"order_id":"FB138020392193312","warehouse_busy":true}',
              "--trace", "req-8c1f2b", "--id", str(uuid.uuid4()))
        d.ctl("publish", "order_create", '{"order_id":10042}')
        d.ctl("publish", "no_such_event", '{"order_id":1}')  # dead-lettered by the scheduler
        d.ctl("enqueue", "demo", "closeOrder", '{"order_id":7}', "--delay", "1h")
        before = d.queued_envelopes()
        d.start()
        # virtualShipping asks for a retry in 2 s: its second envelope waits with a history.
        d.wait_results(2)
        deadline = time.monotonic() + 30
        while not any(r["task"] == "virtualShipping" and r["status"] == "retry" for r in d.results()):
            assert time.monotonic() < deadline, f"virtualShipping asked for no retry\n{d.logs()}"
            time.sleep(0.05)
        d.stop()
        after = d.queued_envelopes()
        with sqlite3.connect(d.db) as db:
            dead = [json.loads(bytes(r[0])) for r in db.execute("SELECT body FROM dead_letters WHERE kind != 'raw'")]
    envelopes = before + after + dead
    kinds = {(e["kind"], "history" in e, "parent" in e) for e in envelopes}
    assert ("task", True, True) in kinds, f"no retried task with a history among {len(envelopes)} envelopes"
    assert ("event", False, False) in kinds and ("task", False, False) in kinds, kinds
    assert dead, "the unregistered event was not dead-lettered"
    return envelopes


def refused(schema: dict, good_event: dict, good_task: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    cases = {
        "an event with an attempt": dict(good_event, attempt=0),
        "params that are an array": dict(good_event, params=[1, 2]),
        "params that are null": dict(good_event, params=None),
        "an upper-case id": dict(good_event, id=good_event["id"].upper()),
        "version 2": dict(good_event, v=2),
        "a task without a topic": {k: v for k, v in good_task.items() if k != "topic"},
        "a topic with a dot": dict(good_task, topic="a.b"),
        "a negative attempt": dict(good_task, attempt=-1),
        "max_attempts 0": dict(good_task, max_attempts=0),
        "retry with another member": dict(good_task, retry={"backoff_ms": [1], "exp": 2}),
        "a jitter over 100 %": dict(good_task, retry={"backoff_ms": [1], "jitter_pct": 101}),
        "a trace of 129 bytes": dict(good_event, trace="x" * 129),
        "a history entry without a status": dict(good_task, history=[{"attempt": 0}]),
        "an event name with a space": dict(good_event, event="order paid"),
    }
    for why, envelope in cases.items():
        assert not validator.is_valid(envelope), f"the schema accepts {why}: {json.dumps(envelope)}"
    print(f"schema refuses {len(cases)} envelopes ebats refuses")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    args = ap.parse_args()
    schema = json.loads((args.source / "docs" / "envelope.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    print("schema is a valid draft 2020-12 schema")

    examples = wire_examples(args.source)
    assert len(examples) >= 2, "docs/WIRE.md lost its json examples"
    validate_envelopes(examples, args.source)
    print(f"{len(examples)} examples of docs/WIRE.md validate")
    checked = task_ids_follow_section_3(args.source, examples)
    assert checked >= 1, "docs/WIRE.md has no task example made from an event"
    print(f"{checked} task example(s) of docs/WIRE.md carry the id that §3 computes")

    written = written_by_libebats(args.build)
    validate_envelopes(written, args.source)
    print(f"{len(written)} envelopes written by libebats validate (events, tasks, retries, dead letters)")

    event = next(e for e in written if e["kind"] == "event")
    task = next(e for e in written if e["kind"] == "task" and "history" in e)
    refused(schema, copy.deepcopy(event), copy.deepcopy(task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
