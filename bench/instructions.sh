#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): unlike CPU time
# on a shared VM, the count repeats from run to run, so small differences
# (a feature on vs off, tandem vs the bare pass-through) can be compared.
# The proxy runs under callgrind twice, for N1 and N2 requests; the
# difference divided by N2 - N1 leaves out start-up and shutdown.
#
# Usage: bench/instructions.sh tandem CONFIG.yaml   (a bench/tandem.bench.yaml-like file)
#        bench/instructions.sh bare
# Env: N1 (default 1500), N2 (default 4500), PORT (listener, default 18100).
# tandem runs with the Node flags of dist/cli.js's shebang, as shipped; among
# them --no-concurrent-recompilation keeps the JIT on the main thread, where
# valgrind runs it at the same point of every run. N1 must be past the
# warm-up: with 500 requests, compilation still dominated the difference.
# Counts still move by several percent between runs (bench/README.md).
# Needs valgrind (apt-get install valgrind) and `npm run build`. Slow: a few
# minutes per peer.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1
config=${2:-bench/tandem.bench.yaml}
n1=${N1:-1500}
n2=${N2:-4500}
port=${PORT:-18100}
admin=$((port + 1))
node=$PWD/node_modules/node/bin/node
autocannon=$PWD/node_modules/.bin/autocannon
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$node" bench/upstream.js 4 > "$work/ports.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
read -r -a ups < <("$node" -e "console.log(JSON.parse(require('fs').readFileSync('$work/ports.json','utf8')).ports.join(' '))")

# an accepting collector for configurations with tracing (its port is 14318 in them)
"$node" bench/otlp-sink.js > "$work/sink.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/sink.json" ] && break; sleep 0.1; done
sink=$("$node" -e "console.log(JSON.parse(require('fs').readFileSync('$work/sink.json','utf8')).port)")

sed -e "s/18081/${ups[0]}/; s/14318/$sink/; s/18082/${ups[1]}/; s/18083/${ups[2]}/; s/18084/${ups[3]}/" \
  -e "s#/tmp/tandem-bench/access.log#$work/access.log#; s/port: 19901/port: $admin/; s/port: 18000/port: $port/" \
  "$config" > "$work/tandem.yaml"

count() {
  local n=$1 pid
  rm -f "$work"/cg.*
  if [ "$mode" = bare ]; then
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$node" --no-concurrent-recompilation bench/peers/bare-undici.js "$port" "http://127.0.0.1:${ups[0]}" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/small" && break; sleep 0.5; done
  else
    read -r -a flags < <(head -1 dist/cli.js | sed -e 's/^#!.*node//')
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$node" "${flags[@]}" dist/cli.js -c "$work/tandem.yaml" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" && break; sleep 0.5; done
  fi
  pids+=("$pid")
  "$autocannon" -c 10 -a "$n" "http://127.0.0.1:$port/small" > /dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  awk '/^(summary|totals):/ { s += $2 } END { printf "%.0f\n", s }' "$work"/cg.*
}

i1=$(count "$n1")
i2=$(count "$n2")
echo "$mode $config: $(( (i2 - i1) / (n2 - n1) )) instructions per request ($n1 requests: $i1, $n2: $i2)"
