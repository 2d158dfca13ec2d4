"""The real ebats daemons for the client tests (PHP, Python, sources).

A test gets a temporary folder with an ebats.yaml that registers the seed's
shop events (the example plugins shop.so and shop_c.so in BUILD/plugins handle them), starts
ebats-scheduler and the ntask and dtask workers of topic `demo` from the
build folder, and reads the results file they write. The broker is a SQLite
file in that folder, or, when EBATS_TEST_BACKEND=amqp, the private RabbitMQ
node ctest started (EBATS_TEST_AMQP_NODE_DIR) with a fresh name prefix.

    with Daemons(build_dir) as d:
        ...publish through a client with d.config...
        records = d.wait_results(3)   # the result records, one per attempt

Standard library only. The daemons are stopped (SIGTERM, then SIGKILL) and
the folder removed when the block ends, also after a failure.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

SHOP_EVENTS = """\
events:
  order_create:
    - { task: closeOrder, topic: demo, delay: 2s }
  order_paied:
    - { task: virtualShipping, topic: demo }
    - { task: sendReceipt, topic: demo }
  order_sync:
    - { task: orderAsync, topic: demo }
workers:
  demo: { processes: 2 }
"""


def amqp_backend() -> bool:
    return os.environ.get("EBATS_TEST_BACKEND") == "amqp"


def amqp_url() -> str:
    node = os.environ.get("EBATS_TEST_AMQP_NODE_DIR", "")
    port = Path(node, "port").read_text().strip()
    return f"amqp://guest@127.0.0.1:{port}/"


class Daemons:
    def __init__(self, build_dir: str | os.PathLike, extra_yaml: str = "", start: bool = True):
        self.build = Path(build_dir)
        self.bin = self.build / "bin"
        self.library = self.build / "libebats" / "libebats.so"
        self.dir = Path(tempfile.mkdtemp(prefix="ebats-client-"))
        self.config = str(self.dir / "ebats.yaml")
        self.results_file = self.dir / "results.jsonl"
        self.db = self.dir / "ebats.db"
        self.prefix = "c" + secrets.token_hex(6)
        if amqp_backend():
            os.environ.setdefault("EBATS_BROKER_PASSWORD", "guest")
            broker = f'broker: {{ url: "{amqp_url()}", amqp: {{ prefix: "{self.prefix}" }} }}\n'
        else:
            broker = f'broker: {{ url: "sqlite://{self.db}" }}\n'
        Path(self.config).write_text(
            "version: 1\n" + broker +
            f"plugins: {{ dir: {self.build / 'plugins'} }}\n"
            f"results: {{ file: {self.results_file} }}\n" + SHOP_EVENTS + extra_yaml)
        self.procs: list[subprocess.Popen] = []
        self._start = start

    def __enter__(self) -> "Daemons":
        if self._start:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if not os.environ.get("EBATS_TEST_KEEP"):
            subprocess.run(["rm", "-rf", str(self.dir)], check=False)

    def start(self) -> None:
        """ebats-scheduler and the ntask and dtask workers of topic demo."""
        for name, extra in (("ebats-scheduler", []), ("ebats-ntask-worker", ["--topic", "demo"]),
                            ("ebats-dtask-worker", ["--topic", "demo"])):
            log = open(self.dir / f"{name}.log", "wb")
            self.procs.append(subprocess.Popen([str(self.bin / name), "--config", self.config, *extra],
                                               stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def logs(self) -> str:
        """Every daemon's log, for a failure message."""
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')}" for f in sorted(self.dir.glob("*.log")))

    def results(self) -> list[dict]:
        if not self.results_file.exists():
            return []
        return [json.loads(line) for line in self.results_file.read_text().splitlines() if line.strip()]

    def wait_results(self, count: int, timeout: float = 60.0) -> list[dict]:
        """The result records once there are at least `count` (AssertionError after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{p.args[0]} exited with {p.returncode}\n{self.logs()}")
            records = self.results()
            if len(records) >= count:
                return records
            time.sleep(0.05)
        raise AssertionError(f"{len(self.results())} of {count} results after {timeout} s\n{self.logs()}")

    def ctl(self, *args: str) -> str:
        """ebatsctl with this config; its stdout (CalledProcessError when it fails)."""
        return subprocess.run([str(self.bin / "ebatsctl"), "--config", self.config, *args], check=True,
                              capture_output=True, text=True).stdout

    def queued_envelopes(self) -> list[dict]:
        """SQLite only: the envelopes waiting in the events and tasks tables (daemons not started)."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT body FROM events UNION ALL SELECT body FROM tasks").fetchall()
        return [json.loads(bytes(r[0])) for r in rows]


def validate_envelopes(envelopes: list[dict], source_dir: str | os.PathLike) -> None:
    """Checks each envelope against docs/envelope.schema.json (python3-jsonschema)."""
    import jsonschema  # Debian's python3-jsonschema, installed by scripts/install-deps.sh

    schema = json.loads(Path(source_dir, "docs", "envelope.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for envelope in envelopes:
        errors = sorted(validator.iter_errors(envelope), key=str)
        if errors:
            raise AssertionError(f"envelope {json.dumps(envelope)} breaks the schema: {errors[0].message}")
