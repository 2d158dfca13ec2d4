#!/usr/bin/python3
"""`sources` (custom schedulers) with the real daemons and foreign producers.

    test_sources.py --build BUILD --source SOURCE

On RabbitMQ (EBATS_TEST_BACKEND=amqp, the ctest amqp pass): the article's
custom scheduler as YAML. An upstream system publishes to the topic
exchange order_fanout with amqp-publish (amqp-tools) and with pika, as
foreign producers do; ebats-scheduler consumes the queue shzf_order_paied
(bound with *.*.WAIT_SELLER_SEND_GOODS) and each message becomes task
orderAsync on topic demo with the message as its params, plus the routing key
and a header the source names. Checked: the result records, a message id
that is a UUID giving the task id, a message of another key not taken, a
non-JSON body and a JSON array dead-lettered with the reason and the raw
bytes while the source keeps consuming, and a source that turns messages
into an event (fanned out through `events`).
On SQLite: `--check-config` refuses `sources` and says why.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Daemons, amqp_backend, amqp_url  # noqa: E402

# The article's names, with a suffix per run: queues outlive a test run.
SOURCES = """\
sources:
  shzf_order_paied{s}:
    exchange: {{ name: order_fanout{s}, type: topic }}
    bindings: ["*.*.WAIT_SELLER_SEND_GOODS"]
    task: {{ name: orderAsync, topic: demo }}
    params: {{ routing_key: _routing_key, headers: {{ x-shop: _shop }} }}
  order_sync_feed{s}:
    exchange: {{ name: order_sync_fanout{s}, type: fanout }}
    event: order_sync
"""
KEY = "shzf.order.WAIT_SELLER_SEND_GOODS"
EBATS_NS = uuid.UUID("55d30b06-e5f9-4a5d-80c4-46acb6f9b7b3")


def task_id(event_id: str, event: str, task: str, topic: str) -> str:
    """docs/WIRE.md §3; for a source, `event` is the source's name."""
    b = bytearray(uuid.uuid5(EBATS_NS, f"{event_id}\n{event}\n{task}\n{topic}").bytes)
    b[0:8] = uuid.UUID(event_id).bytes[0:8]
    b[6] = 0x80 | (b[6] & 0x0F)
    return str(uuid.UUID(bytes=bytes(b)))


def amqp_publish(exchange: str, key: str, body: str, *headers: str) -> None:
    url = amqp_url().replace("amqp://guest@", "amqp://guest:guest@") + "%2f"  # vhost "/"
    args = ["amqp-publish", "-u", url, "-e", exchange, "-r", key, "-p", "-b", body]
    for h in headers:
        args += ["-H", h]
    subprocess.run(args, check=True)


def pika_publish(exchange: str, key: str, body: bytes, message_id: str, headers: dict) -> None:
    import pika  # Debian's python3-pika, as an upstream Python service would use it

    port = int(amqp_url().rsplit(":", 1)[1].split("/")[0])
    params = pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"))
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, key, body, pika.BasicProperties(
            message_id=message_id, headers=headers, delivery_mode=2, content_type="application/json"))


def check_sqlite_refuses(build: Path) -> None:
    with Daemons(build, extra_yaml=SOURCES.format(s=""), start=False) as d:
        run = subprocess.run([str(d.bin / "ebats-scheduler"), "--config", d.config, "--check-config"],
                             capture_output=True, text=True)
        out = run.stdout + run.stderr
        assert run.returncode == 2, (run.returncode, out)
        assert "sources need an amqp:// or amqps:// broker" in out, out
        print("SQLite: --check-config refuses sources:", out.strip().splitlines()[0])


def wait_for(what: str, predicate, d: Daemons, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{d.logs()}")


def check_rabbitmq(build: Path) -> None:
    s = "_" + uuid.uuid4().hex[:8]
    with Daemons(build, extra_yaml=SOURCES.format(s=s), start=False) as d:
        check = subprocess.run([str(d.bin / "ebats-scheduler"), "--config", d.config, "--check-config"],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        # `ebatsctl setup` declares the sources' queues and bindings, so the
        # upstream's messages wait for the scheduler.
        d.ctl("setup")
        amqp_publish("order_fanout" + s, KEY, '{"order_id":"FB138020392193312"}', "x-shop: shzf")
        pika_id = str(uuid.uuid4())
        pika_publish("order_fanout" + s, KEY, b'{"order_id":"FB138020392193313","amount":12.50}', pika_id,
                     {"x-shop": "shzf-py", "x-other": 7})
        amqp_publish("order_fanout" + s, "shzf.order.PAID", '{"order_id":"not for this source"}')
        amqp_publish("order_fanout" + s, KEY, "not json")
        amqp_publish("order_fanout" + s, KEY, "[1,2]")
        d.start()
        records = d.wait_results(2)
        # After the bad ones, the source still consumes.
        amqp_publish("order_fanout" + s, KEY, '{"order_id":"FB138020392193314"}')
        amqp_publish("order_sync_fanout" + s, "", '{"order_id":"FB138020392193315"}')
        records = d.wait_results(4)
        time.sleep(1.0)  # nothing else may arrive
        records = d.results()
        by_order = {r["params"]["order_id"]: r for r in records}
        assert sorted(by_order) == ["FB138020392193312", "FB138020392193313", "FB138020392193314",
                                    "FB138020392193315"], records
        assert len(records) == 4, f"{len(records)} results, expected 4 (one per good message)\n{records}"
        assert all(r["task"] == "orderAsync" and r["status"] == "ok" and r["topic"] == "demo" for r in records)
        first = by_order["FB138020392193312"]["params"]
        assert first == {"order_id": "FB138020392193312", "_routing_key": KEY, "_shop": "shzf"}, first
        second = by_order["FB138020392193313"]
        assert second["params"] == {"order_id": "FB138020392193313", "amount": 12.50, "_routing_key": KEY,
                                    "_shop": "shzf-py"}, second["params"]
        assert second["task_id"] == task_id(pika_id, "shzf_order_paied" + s, "orderAsync", "demo"), second
        synced = by_order["FB138020392193315"]["params"]
        assert synced == {"order_id": "FB138020392193315"}, synced
        print("results: 4 orderAsync ok; params = body + routing key + x-shop; pika's message id gave the task id;"
              " the fanout source's event was fanned out")

        dead = json.loads(d.ctl("dead", "list", "--json"))
        assert len(dead) == 2, dead
        assert all(x["kind"] == "raw" and x["reason"] == "malformed" for x in dead), dead
        bodies = set()
        for x in dead:
            shown = json.loads(d.ctl("dead", "show", str(x["id"]), "--json"))
            assert f"source 'shzf_order_paied{s}'" in shown["error"] and KEY in shown["error"], shown
            bodies.add(shown["body"])
        assert bodies == {"not json", "[1,2]"}, bodies
        print("dead letters: the non-JSON and the array body, reason malformed, raw bytes kept, source named")

        stats = json.loads(d.ctl("stats", "--json"))
        assert all(row.get("pending", 0) == 0 for row in stats), stats
        d.stop()
        for queue in ("shzf_order_paied" + s, "order_sync_feed" + s):
            subprocess.run([str(Path(__file__).resolve().parents[1] / "amqp" / "rabbitmq-node.sh"), "ctl",
                            os.environ["EBATS_TEST_AMQP_NODE_DIR"], "delete_queue", queue],
                           capture_output=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    args = ap.parse_args()
    if amqp_backend():
        check_rabbitmq(args.build)
    else:
        check_sqlite_refuses(args.build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
