#!/usr/bin/env bash
# The multi-host story on one machine: a 3-node RabbitMQ cluster on loopback
# ports, ebats daemons pointed at different nodes, one node killed with
# SIGKILL mid-run and restarted, and a count that nothing was lost.
#
#   tests/amqp/cluster-test.sh [--build DIR] [--events N] [--keep]
#
# DIR is a build with tests (default: build); N events (default 6000) each
# fan out to 2 tasks: `sleep` (2 ms) on topic t, run by two ntask workers on
# nodes 2 and 3, and `record` on topic u 2 s later, run by a dtask worker on
# node 2. The scheduler is on node 1 and the events are published to node 1.
# When a third of the tasks have run, node 2 is killed (SIGKILL of its VM),
# restarted 5 s later, and rejoins. The script then checks:
#   - every ebats quorum queue has members on all 3 nodes;
#   - every task ran to success or is a dead letter (lost: 0), and prints how
#     many executions were repeats (at-least-once: the daemons on node 2
#     lose their connection, and what they held runs again).
# Exit 0 when nothing was lost. Takes about 2-3 minutes on 2 cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build=$repo/build
events=6000
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --events) events=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "cluster-test: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin=$build/bin
plugins=$build/tests/plugins/good
for f in "$bin/ebats-scheduler" "$bin/ebatsctl" "$plugins/test_tasks.so"; do
  [ -e "$f" ] || { echo "cluster-test: $f is missing; build with tests first (scripts/build.sh)" >&2; exit 2; }
done
node="$repo/tests/amqp/rabbitmq-node.sh"
work=$(mktemp -d /tmp/ebats-cluster.XXXXXX)
pids=()
finish() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$node" stop "$work/rabbit" >/dev/null 2>&1 || true
  if [ "$keep" = 1 ]; then echo "cluster-test: kept $work"; else rm -rf "$work"; fi
}
trap finish EXIT
say() { echo "cluster-test: $*"; }

say "starting a 3-node RabbitMQ cluster in $work/rabbit"
mapfile -t urls < <("$node" cluster "$work/rabbit" --nodes 3)
[ "${#urls[@]}" -eq 3 ] || { echo "cluster-test: the cluster did not start" >&2; exit 1; }

export EBATS_BROKER_PASSWORD=guest EBATS_TEST_RECORD=$work/executions.txt
for i in 1 2 3; do
  cat > "$work/node$i.yaml" <<YAML
broker:
  url: "${urls[i-1]}"
  amqp: {prefix: cluster, heartbeat: 5s, reconnect: {min: 200ms, max: 2s}}
plugins: { dir: $plugins }
results: { file: $work/results.jsonl }
events:
  e:
    - { task: sleep, topic: t }
    - { task: record, topic: u, delay: 2s }
workers:
  t: { processes: 2 }
  u: { processes: 2 }
YAML
done
start() {  # start NAME NODE PROGRAM ARGS...
  local name=$1 n=$2
  shift 2
  "$bin/$1" --config "$work/node$n.yaml" "${@:2}" 2>>"$work/$name.log" &
  pids+=($!)
}
say "publishing $events events to node 1 (each: sleep on t, record on u 2 s later)"
"$bin/ebatsctl" --config "$work/node1.yaml" setup >/dev/null
seq 0 $((events - 1)) | sed 's/.*/{"ms":2,"n":&}/' | "$bin/ebatsctl" --config "$work/node1.yaml" publish e --jsonl >/dev/null
say "starting the scheduler on node 1, ntask workers of t on nodes 2 and 3, the dtask worker of u on node 2"
start scheduler 1 ebats-scheduler
start ntask-t-node2 2 ebats-ntask-worker --topic t
start ntask-t-node3 3 ebats-ntask-worker --topic t
start dtask-u-node2 2 ebats-dtask-worker --topic u
total=$((2 * events))
executions() { [ -f "$work/executions.txt" ] && wc -l < "$work/executions.txt" || echo 0; }
deadline=$(( $(date +%s) + 300 ))
while [ "$(executions)" -lt $((total / 3)) ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { say "no progress: $(executions) executions"; exit 1; }
  sleep 0.2
done
say "$(executions) of $total tasks ran: killing node 2 (SIGKILL)"
"$node" crash "$work/rabbit/n2"
sleep 5
say "$(executions) ran; restarting node 2"
"$node" restart "$work/rabbit/n2"

ok_count() { [ -f "$work/results.jsonl" ] && jq -r 'select(.status=="ok") | "\(.topic) \(.params.n)"' "$work/results.jsonl" | sort -u | wc -l || echo 0; }
deadline=$(( $(date +%s) + 300 ))
while [ "$(ok_count)" -lt "$total" ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then say "gave up waiting: $(ok_count) of $total tasks finished"; break; fi
  sleep 1
done

say "queues and their members:"
"$node" ctl "$work/rabbit/n1" -q list_queues name type members --formatter json > "$work/queues.json"
jq -r '.[] | select(.name | startswith("cluster.")) | "  \(.name) \(.type) \(.members | length) members"' "$work/queues.json"
short=$(jq '[.[] | select(.name | startswith("cluster.")) | select(.type == "quorum") | select((.members | length) < 3)] | length' "$work/queues.json")

jq -r 'select(.status=="ok") | "\(.topic) \(.params.n)"' "$work/results.jsonl" | sort -u > "$work/ok.txt"
"$bin/ebatsctl" --config "$work/node1.yaml" dead list --json > "$work/dead.json"
dead=$(jq length "$work/dead.json")
for t in t u; do seq 0 $((events - 1)) | sed "s/^/$t /"; done | sort > "$work/expected.txt"
lost=$(comm -23 "$work/expected.txt" "$work/ok.txt" | wc -l)
ran=$(executions)
say "$total tasks: $(wc -l < "$work/ok.txt") ok, $dead dead-lettered, $((lost - dead > 0 ? lost - dead : 0)) lost; $ran executions, $((ran - total)) repeats"
failed=0
if [ "$short" -ne 0 ]; then say "FAIL: $short quorum queues have fewer than 3 members"; failed=1; fi
if [ "$lost" -gt "$dead" ]; then
  say "FAIL: tasks lost; the daemons' last log lines:"
  for f in "$work"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
  failed=1
fi
[ "$failed" = 0 ] && say "ok: nothing lost"
exit "$failed"
