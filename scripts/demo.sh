#!/usr/bin/env bash
# The README's demo command. Installs the Debian packages, builds, starts the
# three daemons on the embedded SQLite broker in a temporary state dir with the
# example plugin, publishes the original article's events and prints every
# result record as it arrives (fan-out, a retry, the delayed task when it comes
# due), then stops the daemons cleanly.
#
#   scripts/demo.sh               # on SQLite
#   scripts/demo.sh --rabbitmq    # the same on RabbitMQ: a private node it starts and stops
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
broker=sqlite
case "${1:-}" in
  "") ;;
  --rabbitmq) broker=rabbitmq ;;
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo: unknown option '$1' (try --rabbitmq)" >&2; exit 2 ;;
esac

scripts/install-deps.sh
echo "== building (build-demo/)"
EBATS_BUILD_DIR=build-demo scripts/build.sh -DEBATS_BUILD_TESTS=OFF
bin=$repo/build-demo/bin

state=$(mktemp -d /tmp/ebats-demo.XXXXXX)
config=$state/ebats.yaml
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null || true
  if [ "$broker" = rabbitmq ]; then tests/amqp/rabbitmq-node.sh stop "$state/rabbitmq" >/dev/null 2>&1 || true; fi
}
trap stop_all EXIT

broker_yaml='broker:  { url: "sqlite://ebats.db" }'
if [ "$broker" = rabbitmq ]; then
  echo "== starting a private RabbitMQ node (data and logs in $state/rabbitmq)"
  url=$(tests/amqp/rabbitmq-node.sh start "$state/rabbitmq")
  export EBATS_BROKER_PASSWORD=guest   # the private node's guest user, on loopback only
  broker_yaml="broker:  { url: \"$url\" }"
fi
cat > "$config" <<YAML
# The demo's config: config/ebats.yaml with paths inside $state.
$broker_yaml
plugins: { dir: $repo/build-demo/plugins }
results: { file: results.jsonl }
events:
  order_create:                    # close the order if it is still unpaid 10s later
    - { task: closeOrder, topic: demo, delay: 10s }
  order_paied:                     # one event, two tasks (fan-out)
    - { task: virtualShipping, topic: demo, retry: { max: 5, backoff: [5s, 5m, 10m, 1h, 2h10m] } }
    - { task: sendReceipt, topic: demo }
workers:
  demo: { processes: 2 }
YAML


echo "== state dir $state"
echo "== checking the config and the plugins"
"$bin/ebats-scheduler" --config "$config" --check-config
echo "== starting ebats-scheduler, ebats-ntask-worker@demo, ebats-dtask-worker@demo (logs in $state/*.log)"
"$bin/ebats-scheduler" --config "$config" 2>"$state/scheduler.log" & pids+=($!)
"$bin/ebats-ntask-worker" --config "$config" --topic demo 2>"$state/ntask.log" & pids+=($!)
"$bin/ebats-dtask-worker" --config "$config" --topic demo 2>"$state/dtask.log" & pids+=($!)

# Print result records as they arrive.
touch "$state/results.jsonl"
tail -n +1 -f "$state/results.jsonl" | jq --unbuffered -r \
  '"\(.started_at / 1000 | strftime("%H:%M:%S"))  \(.status | ascii_upcase | .[0:5] | . + "     " | .[0:6]) \(.task) attempt=\(.attempt) \(.time_ms)ms  \(.message)  params=\(.params | tojson)"' &
tail_pid=$!

ctl() { "$bin/ebatsctl" --config "$config" "$@"; }
sleep 0.5
echo "== publishing order_create {\"order_id\":10042}: closeOrder is due in 10s"
ctl publish order_create '{"order_id":10042}' >/dev/null
echo "== publishing order_paied {\"order_id\":10042,\"warehouse_busy\":true}: fans out to virtualShipping and sendReceipt;"
echo "   virtualShipping finds the warehouse busy and asks for a retry in 2s"
ctl publish order_paied '{"order_id":10042,"warehouse_busy":true}' >/dev/null
echo "== enqueueing orderAsync directly (the custom scheduler's Task::create)"
ctl enqueue demo orderAsync '{"order_id":10043,"status":"WAIT_SELLER_SEND_GOODS"}' >/dev/null
echo "== publishing order_refunded, which no task is registered for: it goes to the dead letters"
ctl publish order_refunded '{"order_id":10044}' >/dev/null 2>&1

# 5 records: virtualShipping retry + ok, sendReceipt ok, orderAsync ok, closeOrder ok (after 10s).
for _ in $(seq 1 300); do
  [ "$(wc -l < "$state/results.jsonl")" -ge 5 ] && break
  sleep 0.1
done
sleep 0.3
got=$(wc -l < "$state/results.jsonl")
if [ "$got" -lt 5 ]; then
  echo "demo: only $got of the 5 result records arrived within 30 s; the daemons' logs:" >&2
  for log in "$state"/*.log; do echo "--- $log" >&2; cat "$log" >&2; done
  exit 1
fi
echo "== ebatsctl stats"
ctl stats
echo "== ebatsctl dead list"
ctl dead list
echo "== stopping the daemons (SIGTERM: they finish what runs and exit)"
stop_all
trap - EXIT
if [ "$broker" = rabbitmq ]; then
  echo "== done; results file: $state/results.jsonl (the RabbitMQ node is stopped)"
else
  echo "== done; results file: $state/results.jsonl, database: $state/ebats.db"
fi
