#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): it moves much
# less than CPU time on a shared VM, so differences (a feature on vs off,
# tandem vs the bare pass-through) can be compared; the machine's load still
# moves it between runs (bench/README.md), hence `pair`.
# Each proxy starts once under callgrind, gets WARM small GETs (JIT, pools),
# then REPS repetitions of N: the counters are zeroed before and dumped after
# each, so start-up, warm-up and shutdown stay out of the count.
#
# Usage: bench/instructions.sh tandem [CONFIG.yaml]  (a bench/tandem.bench.yaml-like file)
#        bench/instructions.sh bare
#        bench/instructions.sh both [CONFIG.yaml]    tandem, then bare
#        bench/instructions.sh pair A B
#   pair: two proxies under callgrind at once, their repetitions taken in
#   turn (A B, A B, ...), so that each pair of counts saw the same moment of
#   a machine whose load moves the counts (bench/README.md). A and B are each
#   a tandem CONFIG.yaml, `bare` (bare undici) or `bare-flags` (bare undici
#   with all of tandem's shebang flags).
# The last line is JSON for bench/run.js: each proxy's counts, one per repetition.
# Env: WARM (default 3000), N (default 3000), REPS (default 3), PORT (listener, default
# random; its admin API on PORT + 1, pair's second tandem on PORT + 2 and + 3);
# TREE_A, TREE_B: another checkout of tandem (built, `npm ci` done) whose
# dist/cli.js runs as pair's A or B tandem, to compare two versions of the
# code (default: this one); KEEP: a directory to keep the callgrind dumps in
# (cg.PID.REP, for callgrind_annotate).
# tandem runs with the Node flags of dist/cli.js's shebang, as shipped; among
# them --no-concurrent-recompilation keeps the JIT on the main thread, where
# valgrind runs it at the same point of every run; the bare pass-through
# gets that flag alone. Needs valgrind (apt-get install valgrind) and
# `npm run build`. About a minute and a half per proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1
config=${2:-bench/tandem.bench.yaml}
warm=${WARM:-3000}
n=${N:-3000}
reps=${REPS:-3}
# a random default, below the ephemeral range: two runs of this script at once
# on one machine must not load each other's proxies
port=${PORT:-$((20000 + RANDOM % 12000))}
node=$PWD/node_modules/node/bin/node
autocannon=$PWD/node_modules/.bin/autocannon
# the proxy on CPU 0, the upstream and the client on CPU 1, as in bench/run.js; a
# command prefix rather than a function, so that $! is valgrind's own pid
cpu0=() cpu1=()
if command -v taskset > /dev/null; then cpu0=(taskset -c 0) cpu1=(taskset -c 1); fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"${cpu1[@]}" "$node" bench/upstream.js 4 > "$work/ports.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
read -r -a ups < <("$node" -e "console.log(JSON.parse(require('fs').readFileSync('$work/ports.json','utf8')).ports.join(' '))")

# an accepting collector for configurations with tracing (its port is 14318 in them)
"$node" bench/otlp-sink.js > "$work/sink.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/sink.json" ] && break; sleep 0.1; done
sink=$("$node" -e "console.log(JSON.parse(require('fs').readFileSync('$work/sink.json','utf8')).port)")

# config CONFIG PORT ADMIN: the path of CONFIG with this run's ports and paths
config() {
  local out=$work/tandem-$2.yaml
  sed -e "s/18081/${ups[0]}/; s/14318/$sink/; s/18082/${ups[1]}/; s/18083/${ups[2]}/; s/18084/${ups[3]}/" \
    -e "s#/tmp/tandem-bench/access.log#$work/access-$2.log#; s/port: 19901/port: $3/; s/port: 18000/port: $2/" \
    "$1" > "$out"
  echo "$out"
}

# launch PEER PORT [CONFIG] [TREE]: starts PEER (tandem, bare or bare-flags)
# under callgrind listening on PORT (its admin API on PORT + 1), waits until
# it is ready and warms it up; sets $pid
launch() {
  local peer=$1 at=$2 tree=${4:-$PWD} ready
  local -a flags
  read -r -a flags < <(head -1 "$tree/dist/cli.js" | sed -e 's/^#!.*node//')
  if [ "$peer" = bare ]; then flags=(--no-concurrent-recompilation); fi
  if [ "$peer" = bare ] || [ "$peer" = bare-flags ]; then
    "${cpu0[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$node" "${flags[@]}" bench/peers/bare-undici.js "$at" "http://127.0.0.1:${ups[0]}" > "$work/$peer-$at.log" 2>&1 &
    ready="http://127.0.0.1:$at/small"
  else
    "${cpu0[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$node" "${flags[@]}" "$tree/dist/cli.js" -c "$(config "$3" "$at" $((at + 1)))" > "$work/$peer-$at.log" 2>&1 &
    ready="http://127.0.0.1:$((at + 1))/ready"
  fi
  pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do curl -sf -o /dev/null "$ready" && break; sleep 0.5; done
  "${cpu1[@]}" "$autocannon" -c 10 -a "$warm" "http://127.0.0.1:$at/small" > /dev/null 2>&1
}

# repetition PID PORT REP: prints the instructions per request of repetition REP
repetition() {
  local file=$work/cg.$1.$3
  callgrind_control -z "$1" > /dev/null 2>&1
  "${cpu1[@]}" "$autocannon" -c 10 -a "$n" "http://127.0.0.1:$2/small" > /dev/null 2>&1
  callgrind_control -d "$1" > /dev/null 2>&1
  # the dump can take a while on a loaded machine: up to two minutes
  for _ in $(seq 1200); do grep -q '^summary:' "$file" 2>/dev/null && break; sleep 0.1; done
  awk -v n="$n" '/^summary:/ { printf "%.0f ", $2 / n }' "$file"
  if [ -n "${KEEP:-}" ]; then cp "$file" "$KEEP/"; fi
}

finish() {
  kill -TERM "$1"
  wait "$1" 2>/dev/null || true
}

# count PEER [CONFIG]: prints the instructions per request of each repetition, space-separated
count() {
  local rep
  launch "$1" "$port" "${2:-}"
  for rep in $(seq "$reps"); do repetition "$pid" "$port" "$rep"; done
  # stopped before the line ends: the caller reads the line, then removes
  # the work directory, where callgrind writes a last dump as it stops
  finish "$pid"
  echo
}

# peer OPERAND: the peer an operand of pair names
peer() {
  case $1 in
    bare | bare-flags) echo "$1" ;;
    *) echo tandem ;;
  esac
}

# pair A B: two lines, A's counts and B's, repetitions taken in turn
pair() {
  local a b rep
  launch "$(peer "$1")" "$port" "$1" "${TREE_A:-}"
  a=$pid
  launch "$(peer "$2")" $((port + 2)) "$2" "${TREE_B:-}"
  b=$pid
  local -a ca=() cb=()
  for rep in $(seq "$reps"); do
    ca+=("$(repetition "$a" "$port" "$rep")")
    cb+=("$(repetition "$b" $((port + 2)) "$rep")")
  done
  finish "$a"
  finish "$b"
  echo "${ca[*]}"
  echo "${cb[*]}"
}

json() {
  local IFS=,
  echo "[$*]"
}

# report PEER COUNTS...: median and spread, one line
report() {
  local peer=$1
  shift
  printf '%s\n' "$@" | sort -n | awk -v peer="$peer" -v n="$n" -v reps="$reps" '
    { v[NR] = $1 }
    END { m = v[int((NR + 1) / 2)]; printf "%s: %d instructions per request (median of %d repetitions of %d small GETs; %d to %d, spread %.1f%%)\n", peer, m, reps, n, v[1], v[NR], (v[NR] - v[1]) * 100 / m }'
}

case $mode in
  tandem | bare)
    read -r -a counts < <(count "$mode" "$config")
    report "$mode $config" "${counts[@]}"
    echo "{\"$mode\":$(json "${counts[@]}")}"
    ;;
  both)
    read -r -a t < <(count tandem "$config")
    read -r -a b < <(count bare)
    report "tandem $config" "${t[@]}"
    report "bare undici" "${b[@]}"
    echo "{\"tandem\":$(json "${t[@]}"),\"bare\":$(json "${b[@]}")}"
    ;;
  pair)
    { read -r -a a; read -r -a b; } < <(pair "$2" "$3")
    report "${TREE_A:+$TREE_A }$2" "${a[@]}"
    report "${TREE_B:+$TREE_B }$3" "${b[@]}"
    echo "{\"a\":$(json "${a[@]}"),\"b\":$(json "${b[@]}")}"
    ;;
  *)
    echo "usage: $0 tandem [CONFIG] | bare | both [CONFIG] | pair A B (each a CONFIG, bare or bare-flags)" >&2
    exit 2
    ;;
esac
