#!/usr/bin/env bash
# The RabbitMQ benchmark: run it as `bench/run.sh --broker rabbitmq` (see docs/benchmarks.md).
#
#   bench/run.sh --broker rabbitmq [--runs N] [--dir DIR] [--no-build] [--keep] [--no-doc]
#
# Builds ebats (Release, tests off) into build-bench/, starts one private
# RabbitMQ node (tests/amqp/rabbitmq-node.sh; stopped at the end, also on
# failure), measures the size of one task envelope of the bench, then N times
# (default 3), each run with a fresh name prefix (broker.amqp.prefix) and a
# fresh state dir under DIR (default ${TMPDIR:-/tmp}):
#   limit   bench/amqp_limit.c: 20,000 persistent messages of that size into one
#           quorum queue, confirmed batches of 1,000; then a second amqp_limit
#           process consumes them with ebats' prefetch (1,024) and one
#           basic.ack each, timed from its start (as the worker is) and from its
#           first delivery; run before and after W1;
#   W1      20,000 events published with `ebatsctl publish --jsonl`, routed by
#           the scheduler until `ebatsctl stats` shows 20,000 pending, scheduler
#           stopped; then ebats-ntask-worker (2 child processes) timed from its
#           start (and from its first result) to the 20,000th result; 0 lost,
#           0 duplicated checked; CPU of worker, children and RabbitMQ's VM;
#   W2      with the scheduler and the dtask worker running too, 1,000 tasks
#           registered with `delay: 3s`: lateness = started_at - due_at;
#   W3      1,000 tasks that ask for a retry after 1,000 ms on attempt 0 and
#           succeed on attempt 1: gap = attempt 1's start - attempt 0's end - 1 s;
# then the run's queues and exchanges are deleted. Prints medians and ranges,
# and rewrites the RabbitMQ section of docs/benchmarks.md (unless --no-doc).
# Needs python3, jq, rabbitmq-server and the build dependencies
# (scripts/install-deps.sh). Environment: EBATS_JOBS (parallel build jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=3
base=${TMPDIR:-/tmp}
build=1
keep=0
write_doc=1
command_line="bench/run.sh --broker rabbitmq${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --dir) base=${2:?--dir needs a folder}; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    --no-doc) write_doc=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh --broker rabbitmq: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*|0) echo "bench/run.sh: --runs needs a positive integer, got '$runs'" >&2; exit 2 ;; esac
[ -d "$base" ] || { echo "bench/run.sh: --dir $base is not a folder" >&2; exit 2; }
for tool in python3 jq; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: needs $tool on PATH (apt-get install $tool)" >&2; exit 2; }
done
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ -n "${RABBITMQ_BIN_DIR:-}" ] ||
  { echo "bench/run.sh: needs rabbitmq-server (apt-get install rabbitmq-server)" >&2; exit 2; }

TASKS=20000            # W1 and the limit program
DELAYED=1000           # W2: delayed tasks
DELAY=3s               # W2: their registered delay
RETRIED=1000           # W3: tasks retried once
RETRY_MS=1000          # W3: the delay they ask for (retry_after)
BATCH=1000             # the limit's publish batch (ebatsctl publish --jsonl: transactions of 1,000)
# The ntask worker's prefetch once it has measured its tasks: min(claim_batch
# 1,024, 512 per child) with 2 children (libebats/src/supervisor/worker.cpp,
# prefetch.h); it starts at 2 per child and grows after the first results.
PREFETCH=1024
LEVELS=24              # broker.amqp.delay_levels default: P.delay.00 .. P.delay.23
build_dir=${EBATS_BENCH_BUILD_DIR:-$repo/build-bench}
bin=$build_dir/bin
tool="python3 $repo/bench/bench_tool.py"
node_script=$repo/tests/amqp/rabbitmq-node.sh
export EBATS_BROKER_PASSWORD=${EBATS_BROKER_PASSWORD:-guest}   # the private node's guest user (loopback)
export EBATS_BENCH_RETRY_MS=$RETRY_MS

. "$repo/bench/lib.sh"
bench_build_and_check "$build" amqp_limit

out=$(mktemp -d "$base/ebats-bench-rabbitmq-results.XXXXXX")
node_dir=$out/node
pids=()
state=
node_running=0
stop_daemons() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
on_exit() {
  local rc=$?
  stop_daemons
  if [ "$node_running" = 1 ]; then "$node_script" stop "$node_dir" >/dev/null 2>&1 || true; fi
  if [ "$rc" != 0 ]; then
    echo "bench/run.sh: failed (exit $rc); kept for a look: ${state:+state dir $state, }results and node logs in $out" >&2
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

echo "== machine"
mkdir -p "$node_dir"
$tool machine --dir "$out" > "$out/machine.json"
jq -r '"   \(.nproc) x \(.cpu), \(.mem_gib) GiB, Linux \(.kernel), fsync p50 \(.fsync_4k_ms.p50) ms on \(.filesystem), load \(.loadavg_at_start)"' "$out/machine.json"

echo "== starting a private RabbitMQ node in $node_dir"
node_running=1   # from here on, on_exit stops it (`stop` is a no-op when nothing runs)
url=$("$node_script" start "$node_dir" 2>"$out/node-start.log") ||
  { cat "$out/node-start.log" >&2; exit 1; }
port=$(cat "$node_dir/port")
beam=$(cat "$node_dir/beam.pid")
[ -r "/proc/$beam/stat" ] || { echo "bench/run.sh: the node's VM (pid $beam from $node_dir/beam.pid) is not running" >&2; exit 1; }
limit=("$bin/amqp_limit" --port "$port")
package=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo unknown)
erlang_package=$(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null || echo unknown)
librabbitmq=$(dpkg-query -W -f '${Version}' librabbitmq4 2>/dev/null || echo unknown)
echo "   $url (VM pid $beam, package rabbitmq-server $package, erlang-base $erlang_package)"

# Inputs, prepared once outside the timed parts.
seq 1 "$TASKS" | sed 's/.*/{"n":&}/' > "$out/w1.jsonl"
seq 1 "$DELAYED" | sed 's/.*/{"n":&}/' > "$out/w2.jsonl"
seq 1 "$RETRIED" | sed 's/.*/{"n":&}/' > "$out/w3.jsonl"

write_config() {  # write_config FILE PREFIX
  cat > "$1" <<YAML
# Written by bench/run.sh --broker rabbitmq.
version: 1
broker:  { url: "$url", amqp: { prefix: "$2" } }
plugins: { dir: $plugins }
results: { file: results.jsonl }
events:
  bench_noop:
    - { task: noop, topic: bench }
  bench_delayed:
    - { task: bench_record, topic: bench, delay: $DELAY }
  bench_retry:
    - { task: bench_retry_once, topic: bench, retry: { max: 1, backoff: [1s] } }
workers:
  bench: { processes: 2 }
YAML
}

# Deletes every queue and exchange of a prefix (topology.h), so the next run
# starts with a node that holds nothing of this one.
delete_prefix() {  # delete_prefix PREFIX
  local p=$1 args=() level
  for q in events ntask.bench dtask.bench dead results; do args+=(--delete-queue "$p.$q"); done
  for x in events ntask dtask dead results; do args+=(--delete-exchange "$p.$x"); done
  for level in $(seq -f '%02g' 0 $((LEVELS - 1))); do
    args+=(--delete-queue "$p.delay.$level" --delete-exchange "$p.delay.$level")
  done
  "${limit[@]}" "${args[@]}" >/dev/null
  sleep 1   # the VM stops the queues' processes; not inside the next timed window
}

# Polls `ebatsctl stats --json` until topic bench shows N pending tasks.
wait_pending() {  # wait_pending CONFIG N TIMEOUT_S
  local deadline=$(( $(date +%s) + $3 )) n
  while :; do
    n=$("$bin/ebatsctl" --config "$1" stats --json | jq '[.[] | select(.topic == "bench") | .pending] | add // 0')
    [ "$n" = "$2" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "bench/run.sh: after $3 s, stats shows $n tasks pending on topic bench, expected $2" >&2
      return 1
    fi
    sleep 0.05
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# `wait PID`, but by polling. A SIGTERM that came while this script was blocked
# in `wait` killed it without running its traps (bash 5.2.15), and the node was
# left running; between two polls the traps run. The waiter times itself, so
# the polling costs no accuracy.
wait_for() {  # wait_for PID: its exit status
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
  wait "$1"
}

# The body ebats sends for one task of W1: publish one event in a throwaway
# prefix, let the scheduler route it, take the task message off the queue.
echo "== measuring one task envelope"
probe=bench-$$-probe
state=$(mktemp -d "$base/ebats-bench-rabbitmq.XXXXXX")
write_config "$state/ebats.yaml" "$probe"
echo '{"n":10000}' | "$bin/ebatsctl" --config "$state/ebats.yaml" publish bench_noop --jsonl >/dev/null 2>&1
"$bin/ebats-scheduler" --config "$state/ebats.yaml" 2>"$state/scheduler.log" & pids+=($!)
wait_pending "$state/ebats.yaml" 1 30
stop_daemons
"${limit[@]}" --peek "$probe.ntask.bench" > "$out/envelope.json"
delete_prefix "$probe"
rm -rf "$state"; state=
body_bytes=$(jq .body_bytes "$out/envelope.json")
jq -r '"   body \(.body_bytes) bytes (params {\"n\":10000}), type \(.type), content type \(.content_type), message id \(.message_id_bytes) bytes, headers [\(.header_keys|join(", "))]"' "$out/envelope.json"

# The RabbitMQ VM's CPU while nothing talks to it.
t_idle=$(cpu_ticks "$beam"); sleep 2; idle_ticks=$(( $(cpu_ticks "$beam") - t_idle ))
jq -n --argjson t "$idle_ticks" --argjson hz "$(getconf CLK_TCK)" '{beam_idle_cpu_s_per_s: ($t / $hz / 2)}' > "$out/idle.json"
jq -r '"   RabbitMQ VM idle: \(.beam_idle_cpu_s_per_s * 1000 | floor) ms of CPU per second"' "$out/idle.json"

# The limit publishes, then drains in a process of its own, timed as the
# worker is: from just before its start, with its connection and declaration.
limit_run() {  # limit_run OUTFILE QUEUE
  "${limit[@]}" --publish-only --tasks "$TASKS" --batch "$BATCH" --body-bytes "$body_bytes" \
    --queue "$2" --beam-pid "$beam" > "$1.publish" 2>"$1.log" || { cat "$1.log" >&2; return 1; }
  local t0
  t0=$(date +%s%N)
  "${limit[@]}" --drain-only "$t0" --tasks "$TASKS" --prefetch "$PREFETCH" --queue "$2" --beam-pid "$beam" \
    > "$1.drain" 2>>"$1.log" || { cat "$1.log" >&2; return 1; }
  jq -s '.[0] * .[1]' "$1.publish" "$1.drain" > "$1"
  rm -f "$1.publish" "$1.drain"
  jq -r '"   limit: publish \(.publish.per_s|floor)/s, drain \(.drain.per_s|floor)/s; drain CPU per task: client \(.drain.client_cpu_s/.tasks*1e6|floor) us + RabbitMQ \(.drain.beam_cpu_s/.tasks*1e6|floor) us"' "$1"
}

for run in $(seq 1 "$runs"); do
  prefix=bench-$$-r$run
  state=$(mktemp -d "$base/ebats-bench-rabbitmq.XXXXXX")
  config=$state/ebats.yaml
  write_config "$config" "$prefix"
  export EBATS_BENCH_RECORD=$state/executions.txt
  rd=$out/run-$run
  mkdir -p "$rd"
  echo "== run $run/$runs (prefix $prefix, state dir $state)"

  limit_run "$rd/limit_before.json" "$prefix.limit-a"

  # W1: publish, route with the scheduler alone, stop it, then drain.
  $tool publish --ctl "$bin/ebatsctl" --config "$config" --event bench_noop --input "$out/w1.jsonl" > "$rd/publish.json"
  t_route=$(date +%s%N)
  "$bin/ebats-scheduler" --config "$config" 2>"$state/scheduler-w1.log" & pids+=($!)
  wait_pending "$config" "$TASKS" 120
  route_ms=$(( ($(date +%s%N) - t_route) / 1000000 ))
  stop_daemons
  mkfifo "$state/start.fifo"
  $tool wait --file "$state/results.jsonl" --count "$TASKS" --timeout 120 --start-fifo "$state/start.fifo" \
    --delta-pid "beam=$beam" > "$rd/drain.json" & waiter=$!
  for _ in $(seq 1 1000); do [ -e "$state/start.fifo.ready" ] && break; sleep 0.01; done
  [ -e "$state/start.fifo.ready" ] || { echo "bench/run.sh: the results waiter did not start" >&2; exit 1; }
  t0=$(date +%s%N)
  "$bin/ebats-ntask-worker" --config "$config" --topic bench 2>"$state/ntask.log" & pids+=($!); ntask=$!
  echo "$t0 ntask=$ntask" > "$state/start.fifo"
  wait_for "$waiter"
  jq -r --argjson n "$TASKS" --argjson route "$route_ms" '"   W1: published \(.events) events in \(.seconds*1000|floor) ms (\(.events_per_s|floor) events/s); routed by the scheduler in ≈ \($route) ms"' "$rd/publish.json"
  jq -r --argjson n "$TASKS" '"   W1: \($n) results in \(.seconds*1000|floor) ms from the worker start (\($n/.seconds|floor) tasks/s), \(.from_first_seconds*1000|floor) ms from the first result (\(($n-1)/.from_first_seconds|floor) tasks/s); CPU s: worker \(.cpu_s.ntask), children \(.cpu_s.ntask_children), RabbitMQ \(.cpu_s.beam*1000|round/1000)"' "$rd/drain.json"

  limit_run "$rd/limit_after.json" "$prefix.limit-b"

  # W2: delayed tasks, with the scheduler and the dtask worker running too.
  "$bin/ebats-scheduler" --config "$config" 2>"$state/scheduler.log" & pids+=($!)
  "$bin/ebats-dtask-worker" --config "$config" --topic bench 2>"$state/dtask.log" & pids+=($!)
  sleep 0.5   # let them start; the tasks are due 3 s after publishing anyway
  $tool publish --ctl "$bin/ebatsctl" --config "$config" --event bench_delayed --input "$out/w2.jsonl" > "$rd/w2_publish.json"
  $tool wait --file "$state/results.jsonl" --count $((TASKS + DELAYED)) --t0-ns "$(date +%s%N)" --timeout 30 \
    --allow-short > "$rd/w2_wait.json"
  $tool lateness --file "$state/results.jsonl" --task bench_record --expect "$DELAYED" --record "$EBATS_BENCH_RECORD" \
    > "$rd/lateness.json"
  jq -r '"   W2: \(.results) delayed tasks, lateness ms min \(.min) p50 \(.p50) p99 \(.p99) max \(.max), \(.early) early; \(.executions_recorded) executions recorded; \(.attempt_above_0) with attempt > 0"' "$rd/lateness.json"

  # W3: retried once after RETRY_MS.
  $tool publish --ctl "$bin/ebatsctl" --config "$config" --event bench_retry --input "$out/w3.jsonl" > "$rd/w3_publish.json"
  $tool wait --file "$state/results.jsonl" --count $((TASKS + DELAYED + 2 * RETRIED)) --t0-ns "$(date +%s%N)" \
    --timeout 30 --allow-short > "$rd/w3_wait.json"
  $tool retry-gap --file "$state/results.jsonl" --task bench_retry_once --expect "$RETRIED" --delay-ms "$RETRY_MS" \
    --record "$EBATS_BENCH_RECORD" > "$rd/retry.json"
  jq -r '"   W3: \(.pairs) of \(.tasks) tasks ran attempt 0 then 1; gap - 1000 ms: min \(.min) p50 \(.p50) p99 \(.p99) max \(.max); \(.tasks_run_exactly_twice) run exactly twice"' "$rd/retry.json"
  stop_daemons

  # Afterwards: nothing left in the run's queues, no dead letters; W1 exact.
  "$bin/ebatsctl" --config "$config" stats --json > "$rd/stats_after.json"
  $tool verify --file "$state/results.jsonl" --task noop --expect "$TASKS" --stats "$rd/stats_after.json" > "$rd/verify.json"
  jq -r '"   W1: \(.results) results, \(.distinct_ids) distinct, \(.lost) lost, \(.duplicates) duplicated, \(.attempt_above_0) with attempt > 0\(if .exact then "" else ": " + (.problems|join("; ")) end)"' "$rd/verify.json"
  delete_prefix "$prefix"

  jq -n --slurpfile p "$rd/publish.json" --slurpfile d "$rd/drain.json" --slurpfile v "$rd/verify.json" \
        --slurpfile l "$rd/lateness.json" --slurpfile w "$rd/w2_wait.json" --slurpfile r "$rd/retry.json" \
        --slurpfile w3 "$rd/w3_wait.json" --slurpfile a "$rd/limit_before.json" --slurpfile b "$rd/limit_after.json" \
        --argjson n "$TASKS" --argjson route "$route_ms" --argjson load "$(cut -d' ' -f1 /proc/loadavg)" \
        '{loadavg: $load, prefix: "'"$prefix"'",
          w1: {publish: $p[0], route_ms: $route, drain: $d[0], verify: $v[0]},
          w2: {wait: $w[0], lateness: $l[0]}, w3: {wait: $w3[0], retry: $r[0]},
          limit_before: $a[0], limit_after: $b[0]}' > "$out/run-$run.json"
  if [ "$keep" = 0 ]; then rm -rf "$state"; fi
  state=
done

"$node_script" stop "$node_dir" >/dev/null 2>&1 || true
node_running=0

doc=$repo/docs/benchmarks.md
if [ "$write_doc" = 0 ]; then doc=$out/benchmarks.md; fi
$tool summarize-rabbitmq --runs-dir "$out" --machine "$out/machine.json" --envelope "$out/envelope.json" \
  --idle "$out/idle.json" --package "$package" --erlang-package "$erlang_package" --librabbitmq "$librabbitmq" --doc "$doc" \
  --command "$command_line" --notes "$repo/bench/notes.md"
if [ "$keep" = 1 ]; then
  echo "per-run data and the node's logs kept in $out"
elif [ "$write_doc" = 1 ]; then
  rm -rf "$out"
else
  rm -rf "$out/node" "$out"/w?.jsonl
fi
