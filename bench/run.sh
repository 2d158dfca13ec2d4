#!/usr/bin/env bash
# The ebats benchmark: the one documented command (see docs/benchmarks.md).
#
#   bench/run.sh [--runs N] [--dir DIR] [--synchronous full|normal] [--backlog N] [--no-build] [--keep] [--no-doc]
#   bench/run.sh --broker rabbitmq [--runs N] [--dir DIR] [--no-build] [--keep] [--no-doc]
#
# --broker sqlite (the default) is described here; --broker rabbitmq runs
# bench/run_rabbitmq.sh instead (see its --help). Each rewrites only its own
# section of docs/benchmarks.md.
#
# Builds ebats (Release, tests off) into build-bench/, then N times (default 3),
# each in a fresh state dir under DIR (default ${TMPDIR:-/tmp}):
#   W1  publish 20,000 events (one no-op task each) with `ebatsctl publish --jsonl`
#       while no daemon runs, then start the scheduler and the ntask worker
#       (2 child processes) and time them until 20,000 results exist; check
#       0 lost and 0 duplicated; the CPU and the peak RSS (VmHWM) of each process;
#   W2  with the dtask worker started too, publish 1,000 events whose task is
#       registered with `delay: 3s` and measure lateness = started_at - due_at;
#   pickup: with the three daemons idle, publish events one at a time (one
#       `ebatsctl publish` each) at 20/s and at 100/s for 5 s each and measure
#       publish → handler start (started_at - due_at, and to the µs with the
#       bench_stamp task's own clock); then the same published by a
#       long-running producer (the Python client, one publisher kept open);
#   W1R and its pickup: W1 again in a fresh state dir with no scheduler, the
#       ntask worker routing the events itself (`route_events: true`), then
#       the long-running producer's pickup against that worker alone, by the
#       Python client and by pickup_producer (bench/pickup_producer.c, the C
#       API), each publish call also timed on its own;
#   the physical-limit program (bench/sqlite_limit.cpp) in the same file system,
#   twice: as the issue defines it (transactions of 100, every commit fsynced)
#   and like ebats (transactions of 1024, only the inserts fsynced); then twice
#   more for the floor of a pickup's publish: one event row per durable commit
#   at 20/s and at 100/s (--commit-rate).
# Then once, in a state dir of its own, the backlog run (--backlog N, default
# 1000000; 0 leaves it out): N ready tasks of a topic no worker serves yet and
# N tasks delayed by an hour are enqueued, W1 runs again on that database (its
# dtask worker running too), then a worker of their own drains the N ready
# ones while throughput, RSS and file sizes are sampled every 0.5 s and
# `ebatsctl stats` is timed every 2 s. gnuplot draws the drain and W2's
# lateness (docs/img/bench-*.png).
# Prints medians and ranges and rewrites docs/benchmarks.md (unless --no-doc).
# --synchronous sets broker.sqlite.synchronous for ebats and the limit program
# alike (default full, ebats' default).
# Needs python3, jq, gnuplot and the build dependencies (scripts/install-deps.sh).
# Environment: EBATS_JOBS (parallel build jobs, default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=3
base=${TMPDIR:-/tmp}
build=1
keep=0
write_doc=1
synchronous=full
backlog=1000000
# --broker picks the benchmark; everything else is the chosen one's.
args=()
broker=sqlite
while [ $# -gt 0 ]; do
  case "$1" in
    --broker) broker=${2:?--broker needs sqlite or rabbitmq}; shift 2 ;;
    --broker=*) broker=${1#--broker=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}
case "$broker" in
  sqlite) ;;
  rabbitmq) exec "$repo/bench/run_rabbitmq.sh" "$@" ;;
  *) echo "bench/run.sh: --broker takes sqlite or rabbitmq, got '$broker'" >&2; exit 2 ;;
esac
command_line="bench/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --dir) base=${2:?--dir needs a folder}; shift 2 ;;
    --synchronous) synchronous=${2:?--synchronous needs full or normal}; shift 2 ;;
    --backlog) backlog=${2:?--backlog needs a number of tasks}; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    --no-doc) write_doc=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*|0) echo "bench/run.sh: --runs needs a positive integer, got '$runs'" >&2; exit 2 ;; esac
case "$backlog" in ''|*[!0-9]*) echo "bench/run.sh: --backlog needs a number of tasks (0: none), got '$backlog'" >&2; exit 2 ;; esac
case "$synchronous" in full|normal) ;; *) echo "bench/run.sh: --synchronous takes full or normal, got '$synchronous'" >&2; exit 2 ;; esac
[ -d "$base" ] || { echo "bench/run.sh: --dir $base is not a folder" >&2; exit 2; }
for tool in python3 jq gnuplot; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: needs $tool on PATH (scripts/install-deps.sh installs it)" >&2; exit 2; }
done

EVENTS=20000           # W1: events, one noop task each
DELAYED=1000           # W2: delayed tasks
DELAY=3s               # W2: their registered delay
PICKUP_SECONDS=5       # pickup: events published one at a time for this long, at 20/s and at 100/s
build_dir=${EBATS_BENCH_BUILD_DIR:-$repo/build-bench}
bin=$build_dir/bin
tool="python3 $repo/bench/bench_tool.py"

. "$repo/bench/lib.sh"
bench_build_and_check "$build" sqlite_limit

out=$(mktemp -d "$base/ebats-bench-results.XXXXXX")
echo "== machine"
$tool machine --dir "$base" > "$out/machine.json"
jq -r '"   \(.nproc) x \(.cpu), \(.mem_gib) GiB, Linux \(.kernel), fsync p50 \(.fsync_4k_ms.p50) ms on \(.filesystem), load \(.loadavg_at_start)"' "$out/machine.json"

# Inputs, prepared once outside the timed parts.
seq 1 "$EVENTS" | sed 's/.*/{"n":&}/' > "$out/w1.jsonl"
seq 1 "$DELAYED" | sed 's/.*/{"n":&}/' > "$out/w2.jsonl"

pids=()
stop_daemons() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
on_exit() {
  local rc=$?
  stop_daemons
  if [ "$rc" != 0 ] && [ -n "${state:-}" ]; then
    echo "bench/run.sh: failed (exit $rc); state dir with the daemon logs kept: $state" >&2
  fi
}
# The config of every run and of the backlog run (whose ready tasks are of
# topic backlog, served by a worker of its own).
write_config() {  # write_config FILE [ROUTE_EVENTS]
  cat > "$1" <<YAML
# Written by bench/run.sh.
version: 1
broker:  { url: "sqlite://ebats.db", sqlite: { synchronous: $synchronous } }
plugins: { dir: $plugins }
results: { file: results.jsonl }
events:
  bench_noop:
    - { task: noop, topic: bench }
  bench_delayed:
    - { task: bench_record, topic: bench, delay: $DELAY }
  bench_pickup:
    - { task: bench_stamp, topic: bench }
workers:
  bench: { processes: 2, route_events: ${2:-false} }
  backlog: { processes: 2 }
YAML
}
# drain_w1 NAME PREFIX DAEMON...: publishes W1's events into $state (no daemon
# running), starts the daemons named (scheduler, ntask) and times them until
# every result is in, then verifies the results; writes $rd/PREFIXpublish.json,
# PREFIXdrain.json and PREFIXverify.json and prints them as NAME.
drain_w1() {
  local name=$1 prefix=$2 daemon t0 start_line
  shift 2
  $tool publish --ctl "$bin/ebatsctl" --config "$config" --event bench_noop --input "$out/w1.jsonl" \
    > "$rd/${prefix}publish.json"
  # The waiter starts first and is told the start time and pids through a
  # FIFO: Python's own start-up (0.05-0.2 CPU s) stays out of the timed window.
  mkfifo "$state/start.fifo"
  $tool wait --file "$state/results.jsonl" --count "$EVENTS" --timeout 120 --start-fifo "$state/start.fifo" \
    > "$rd/${prefix}drain.json" & waiter=$!
  for _ in $(seq 1 1000); do [ -e "$state/start.fifo.ready" ] && break; sleep 0.01; done
  [ -e "$state/start.fifo.ready" ] || { echo "bench/run.sh: the results waiter did not start" >&2; exit 1; }
  t0=$(date +%s%N)
  start_line=$t0
  for daemon in "$@"; do
    case "$daemon" in
      scheduler) "$bin/ebats-scheduler" --config "$config" 2>"$state/scheduler.log" & ;;
      ntask) "$bin/ebats-ntask-worker" --config "$config" --topic bench 2>"$state/ntask.log" & ;;
    esac
    pids+=($!)
    start_line="$start_line $daemon=$!"
  done
  echo "$start_line" > "$state/start.fifo"
  wait "$waiter"
  $tool verify --file "$state/results.jsonl" --db "$state/ebats.db" --task noop --expect "$EVENTS" \
    > "$rd/${prefix}verify.json"
  jq -r --arg w "$name" '"   \($w): published \(.events) events in \(.seconds*1000|floor) ms (\(.events_per_s|floor) events/s)"' "$rd/${prefix}publish.json"
  jq -r --arg w "$name" --argjson n "$EVENTS" '"   \($w): \($n) results in \(.seconds*1000|floor) ms: \($n/.seconds|floor) tasks/s end to end; CPU s: \(.cpu_s|to_entries|map(select(.key|endswith("_n")|not)|"\(.key) \(.value)")|join(", "))"' "$rd/${prefix}drain.json"
  jq -r --arg w "$name" '"   \($w): \(.results) results, \(.distinct_ids) distinct, \(.lost) lost, \(.duplicates) duplicated\(if .exact then "" else ": " + (.problems|join("; ")) end)"' "$rd/${prefix}verify.json"
}
# pickup_by_library NAME WHAT [c]: pickup at 20/s and 100/s, the events
# published by the Python client with one publisher kept open (with c: by
# pickup_producer, the C API), against the daemons running on $config; writes
# $rd/pickup-NAME-RATE.json and prints them.
pickup_by_library() {
  local name=$1 what=$2 rate producer=(--library "$build_dir/libebats/libebats.so")
  [ "${3:-}" = c ] && producer=(--producer "$bin/pickup_producer")
  for rate in 20 100; do
    $tool pickup "${producer[@]}" --config "$config" --event bench_pickup \
      --file "$state/results.jsonl" --record "$EBATS_BENCH_RECORD" --rate "$rate" --count "$((rate * PICKUP_SECONDS))" \
      > "$rd/pickup-$name-$rate.json"
    jq -r --arg what "$what" '"   pickup at \(.rate_per_s)/s \($what): publish → handler start ms min \(.min) p50 \(.p50) p99 \(.p99) max \(.max); to the µs: p50 \(.precise_ms.p50) p99 \(.precise_ms.p99) (the publish call alone p99 \(.publish_call_ms.p99), its return → handler p99 \(.after_return_ms.p99))"' "$rd/pickup-$name-$rate.json"
  done
}
trap on_exit EXIT
trap 'exit 130' INT TERM

for run in $(seq 1 "$runs"); do
  state=$(mktemp -d "$base/ebats-bench.XXXXXX")
  config=$state/ebats.yaml
  write_config "$config"
  export EBATS_BENCH_RECORD=$state/executions.txt
  rd=$out/run-$run
  mkdir -p "$rd"
  echo "== run $run/$runs (state dir $state)"

  # W1: publish with no daemon running, then drain.
  drain_w1 W1 "" scheduler ntask

  # W2: delayed tasks with all three daemons.
  "$bin/ebats-dtask-worker" --config "$config" --topic bench 2>"$state/dtask.log" & pids+=($!)
  sleep 0.5   # let it start; the tasks are due 3 s after publishing anyway
  $tool publish --ctl "$bin/ebatsctl" --config "$config" --event bench_delayed --input "$out/w2.jsonl" > "$rd/w2_publish.json"
  $tool wait --file "$state/results.jsonl" --count $((EVENTS + DELAYED)) --t0-ns "$(date +%s%N)" --timeout 60 > "$rd/w2_wait.json"
  $tool lateness --file "$state/results.jsonl" --task bench_record --expect "$DELAYED" --record "$EBATS_BENCH_RECORD" > "$rd/lateness.json"
  jq -r '"   W2: \(.results) delayed tasks, lateness ms min \(.min) p50 \(.p50) p99 \(.p99) max \(.max), \(.early) early; \(.executions_recorded) executions recorded"' "$rd/lateness.json"
  # Pickup: events published one at a time, the daemons idle between them.
  for rate in 20 100; do
    $tool pickup --ctl "$bin/ebatsctl" --config "$config" --event bench_pickup --file "$state/results.jsonl" \
      --record "$EBATS_BENCH_RECORD" --rate "$rate" --count "$((rate * PICKUP_SECONDS))" > "$rd/pickup-$rate.json"
    jq -r '"   pickup at \(.rate_per_s)/s: \(.results) events published one by one, publish → handler start ms min \(.min) p50 \(.p50) p99 \(.p99) max \(.max); to the µs: p50 \(.precise_ms.p50) p99 \(.precise_ms.p99)"' "$rd/pickup-$rate.json"
  done
  # The same, published by a long-running producer: the Python client, one publisher kept open.
  pickup_by_library lib "by a long-running producer"
  stop_daemons
  if [ "$keep" = 0 ]; then rm -rf "$state"; fi

  # W1R: the same drain with the worker routing the events itself (no scheduler).
  state=$(mktemp -d "$base/ebats-bench.XXXXXX")
  config=$state/ebats.yaml
  write_config "$config" true
  export EBATS_BENCH_RECORD=$state/executions.txt
  drain_w1 "W1R (the worker routes, no scheduler)" route_ ntask
  pickup_by_library route "by a long-running producer, the worker routing"
  pickup_by_library route-c "by the C API producer, the worker routing" c
  stop_daemons

  # The physical limit, same file system, same run: as the issue defines it,
  # and with ebats' batch size and durability.
  "$bin/sqlite_limit" --tasks "$EVENTS" --batch 100 --durability all --dir "$base" --synchronous "$synchronous" \
    > "$rd/limit.json" 2>/dev/null
  "$bin/sqlite_limit" --tasks "$EVENTS" --batch 1024 --durability promises --dir "$base" --synchronous "$synchronous" \
    > "$rd/limit_like_ebats.json" 2>/dev/null
  jq -r '"   physical limit (txns of 100, all fsynced): \(.tasks_per_s|floor) tasks/s (insert \(.insert_per_s|floor)/s, claim+settle \(.drain_per_s|floor)/s)"' "$rd/limit.json"
  jq -r '"   physical limit (txns of 1024, inserts fsynced): \(.tasks_per_s|floor) tasks/s (insert \(.insert_per_s|floor)/s, claim+settle \(.drain_per_s|floor)/s)"' "$rd/limit_like_ebats.json"
  # The floor of a pickup's publish: one event row per durable commit, at the pickup's rates.
  for rate in 20 100; do
    "$bin/sqlite_limit" --tasks "$EVENTS" --batch 1024 --durability promises --dir "$base" --synchronous "$synchronous" \
      --commit-rate "$rate" --commits "$((rate * PICKUP_SECONDS))" > "$rd/limit-commit-$rate.json" 2>/dev/null
    jq -r '"   physical limit, one event per durable commit at \(.commit_rate)/s: p50 \(.commit_ms.p50) ms, p99 \(.commit_ms.p99) ms"' "$rd/limit-commit-$rate.json"
  done

  jq -n --slurpfile p "$rd/publish.json" --slurpfile d "$rd/drain.json" --slurpfile v "$rd/verify.json" \
        --slurpfile l "$rd/lateness.json" --slurpfile w "$rd/w2_publish.json" --slurpfile s "$rd/limit.json" \
        --slurpfile e "$rd/limit_like_ebats.json" \
        --slurpfile p20 "$rd/pickup-20.json" --slurpfile p100 "$rd/pickup-100.json" \
        --slurpfile l20 "$rd/pickup-lib-20.json" --slurpfile l100 "$rd/pickup-lib-100.json" \
        --slurpfile rd "$rd/route_drain.json" --slurpfile rv "$rd/route_verify.json" \
        --slurpfile r20 "$rd/pickup-route-20.json" --slurpfile r100 "$rd/pickup-route-100.json" \
        --slurpfile c20 "$rd/pickup-route-c-20.json" --slurpfile c100 "$rd/pickup-route-c-100.json" \
        --slurpfile lc20 "$rd/limit-commit-20.json" --slurpfile lc100 "$rd/limit-commit-100.json" \
        --argjson n "$EVENTS" --argjson load "$(cut -d' ' -f1 /proc/loadavg)" \
        '{loadavg: $load, w1: {publish: $p[0], drain: $d[0], verify: $v[0], tasks_per_s: ($n / $d[0].seconds)},
          w2: {publish: $w[0], lateness: $l[0]}, pickup: {"20": $p20[0], "100": $p100[0]},
          pickup_library: {"20": $l20[0], "100": $l100[0]},
          w1_route: {drain: $rd[0], verify: $rv[0], tasks_per_s: ($n / $rd[0].seconds)},
          pickup_route: {"20": $r20[0], "100": $r100[0]},
          pickup_route_c: {"20": $c20[0], "100": $c100[0]},
          limit: $s[0], limit_like_ebats: $e[0], limit_commit: {"20": $lc20[0], "100": $lc100[0]}}' > "$out/run-$run.json"
  if [ "$keep" = 0 ]; then rm -rf "$state"; fi
  state=
done

# The backlog run: once, in a state dir of its own.
backlog_args=()
if [ "$backlog" -gt 0 ]; then
  state=$(mktemp -d "$base/ebats-bench-backlog.XXXXXX")
  config=$state/ebats.yaml
  write_config "$config"
  echo "== backlog run: $backlog tasks queued and $backlog delayed (state dir $state)"
  $tool backlog --bin "$bin" --config "$config" --state "$state" --queued "$backlog" --delayed "$backlog" \
    --events "$EVENTS" --events-input "$out/w1.jsonl" --series "$out/backlog-series.txt" > "$out/backlog.json"
  jq -r '"   filled \(.queued) ready at \(.fill_queued.per_s|floor)/s and \(.delayed) delayed at \(.fill_delayed.per_s|floor)/s; stats \(.stats_ms_idle|map(floor)|join(", ")) ms"' "$out/backlog.json"
  jq -r '"   W1 with the backlog: \(.w1_tasks_per_s|floor) tasks/s; drained \(.queued) at \(.drain_tasks_per_s|floor)/s (first tenth \(.drain_rate_first_tenth | if . == null then "–" else floor end), last \(.drain_rate_last_tenth | if . == null then "–" else floor end)); \(.lost) lost, \(.duplicates) duplicated"' "$out/backlog.json"
  backlog_args=(--backlog "$out/backlog.json")
  if [ "$keep" = 0 ]; then rm -rf "$state"; fi
  state=
fi

# The plots: the backlog's drain over time, and W2's lateness of every run.
plots=$repo/docs/img
if [ "$write_doc" = 0 ]; then plots=$out; fi
mkdir -p "$plots"
jq -r '.w2.lateness.values[]' "$out"/run-*.json > "$out/lateness.txt"
gnuplot <<GNUPLOT
set terminal pngcairo size 900,420 font ",10" noenhanced
set output "$plots/bench-lateness.png"
set title "W2: lateness of delayed tasks (started_at - due_at), $runs run(s) of $DELAYED tasks"
set xlabel "lateness (ms)"; set ylabel "tasks"
set boxwidth 0.8; set style fill solid 0.6; set grid ytics
bin(x) = floor(x)
plot "$out/lateness.txt" using (bin(\$1)):(1) smooth frequency with boxes notitle
GNUPLOT
if [ "$backlog" -gt 0 ]; then
  gnuplot <<GNUPLOT
set terminal pngcairo size 900,420 font ",10" noenhanced
set output "$plots/bench-backlog.png"
set title "Backlog run: draining $backlog queued tasks with $backlog delayed pending"
set xlabel "seconds since the worker started"; set ylabel "tasks/s (0.5 s intervals)"
set y2label "RSS (MiB), worker parent + children"; set y2tics; set ytics nomirror; set grid
set yrange [0:*]; set y2range [0:*]
set key autotitle columnhead
plot "$out/backlog-series.txt" using 1:3 with lines lw 2 title "tasks/s", \
     "" using 1:6 axes x1y2 with lines title "RSS of the draining worker (MiB)"
GNUPLOT
  backlog_args+=(--plots img)
  [ "$write_doc" = 0 ] && backlog_args[-1]=$plots
else
  backlog_args+=(--plots "$([ "$write_doc" = 0 ] && echo "$plots" || echo img)")
fi

doc=$repo/docs/benchmarks.md
if [ "$write_doc" = 0 ]; then doc=$out/benchmarks.md; fi
notes=$repo/bench/notes.md
$tool summarize --runs-dir "$out" --machine "$out/machine.json" --doc "$doc" --command "$command_line" \
  ${notes:+--notes "$notes"} "${backlog_args[@]}"
if [ "$keep" = 1 ]; then
  echo "per-run data kept in $out"
elif [ "$write_doc" = 1 ]; then
  rm -rf "$out"
else
  rm -f "$out/w1.jsonl" "$out/w2.jsonl"
fi
