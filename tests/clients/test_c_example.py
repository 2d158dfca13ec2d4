#!/usr/bin/python3
"""examples/c/publish_orders.c (built as BUILD/bin/publish_orders) with the real daemons.

    test_c_example.py --build BUILD --source SOURCE

docs/PRODUCERS.md shows the file whole; this checks that it does, verbatim,
runs it twice (its event id makes the first event idempotent), checks what
it queued and the results the daemons produce, and its error path.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Daemons, amqp_backend, validate_envelopes  # noqa: E402


def run_example(build: Path, config: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, EBATS_CONFIG=config)
    return subprocess.run([str(build / "bin" / "publish_orders")], env=env, capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    args = ap.parse_args()

    example = (args.source / "examples" / "c" / "publish_orders.c").read_text()
    page = (args.source / "docs" / "PRODUCERS.md").read_text()
    assert "```c\n" + example + "```" in page, "docs/PRODUCERS.md does not show examples/c/publish_orders.c verbatim"
    print("docs/PRODUCERS.md shows the example verbatim")

    bad = run_example(args.build, "/nonexistent/ebats.yaml")
    assert bad.returncode == 1, bad
    assert bad.stderr.startswith("publish_orders: ebats_publisher_open: /nonexistent/ebats.yaml: error: cannot read config file"), bad.stderr
    print("a bad config path: exit 1,", bad.stderr.strip())

    with Daemons(args.build, start=False) as d:
        printed = []
        for _ in range(2):
            run = run_example(args.build, d.config)
            assert run.returncode == 0, run.stderr
            printed.append(run.stdout.split())
        first_event = printed[0][1]
        assert printed[1][1] == first_event, "the caller's event id changed between runs"
        task_ids = {printed[0][5], printed[1][5]}
        if not amqp_backend():
            queued = d.queued_envelopes()
            validate_envelopes(queued, args.source)
            created = [e for e in queued if e.get("event") == "order_create"]
            assert len(created) == 1, f"order_create queued {len(created)} times, expected once"
            assert created[0]["trace"] == "checkout-7"
            assert len(queued) == 5, f"{len(queued)} messages queued, expected 1 + 2 x (event + task)"
            print("queued: order_create once (same id twice), 2 payments, 2 tasks; all valid envelopes")
        d.start()
        # closeOrder once (2 s later), 2 x (virtualShipping, sendReceipt, orderAsync); on
        # RabbitMQ order_create is routed twice (same id): closeOrder runs twice, same task id.
        want = 7 if not amqp_backend() else 8
        records = d.wait_results(want)
        assert all(r["status"] == "ok" for r in records), records
        assert {r["task_id"] for r in records if r["task"] == "orderAsync"} == task_ids
        closes = [r for r in records if r["task"] == "closeOrder"]
        assert len({r["task_id"] for r in closes}) == 1 and closes[0]["trace"] == "checkout-7", closes
        print(f"{len(records)} results, all ok; the printed task ids ran; closeOrder has one task id")
    return 0


if __name__ == "__main__":
    sys.exit(main())
