#!/usr/bin/env bash
# One run, one table: hookgate against baselines measured in the same run, on the same machine,
# with the same signed 7 KB GitHub deliveries (unique X-GitHub-Delivery ids, so every request
# takes hookgate's full path: verify, dedup, durable log write; the relay publishes to RabbitMQ
# with confirms). Rows (issue #10, "What it must reach"):
#   1. ingest flat out (wrk, keep-alive, relay running, every accepted event counted in the
#      queue) vs a bare actix-web 200 server; also with the broker down (pure ingest); also vs
#      an actix server that checks the HMAC, a naive verify-publish-await-confirm handler
#      (examples/baseline.rs) and adnanh/webhook (Debian `webhook`, runs /bin/true).
#   2. server CPU per accepted request (utime+stime from /proc/PID/stat) vs the HMAC server.
#   3. p50/p99/p99.9 at a fixed RATE, open loop, latency from the scheduled send time
#      (examples/load.rs --rate, after one uncounted second at the same rate in which the
#      client opens its connections), hookgate vs the bare server; hookgate again with the
#      broker down (RabbitMQ shares the disk, and its fsyncs are in every commit's flush);
#      and what one 8 KB write + fdatasync cost right before each (baseline.rs sync-probe).
#   4. sustained end to end: accepted events / (first request -> /readyz outbox_pending = 0)
#      vs a raw lapin publisher with 512 confirms in flight (baseline.rs --mode raw-publish).
#   5. memory: VmRSS idle, peak (VmHWM) flat out, and while BACKLOG events pile up with the
#      broker stopped, then drain when it is back — on a private RabbitMQ node started here (the
#      shared broker on :5672 is never stopped); disk bytes of the store vs envelope bytes.
#   6. the two ingest ratios and the end-to-end ratio again in PAIRS alternating rounds (bare,
#      hookgate relay on until drained, the raw publisher with as many events, hookgate paced
#      at PACE of that raw rate (the sustained row: the events confirmed per second while it
#      is offered), hookgate broker down, back to back): on a shared machine the cores' speed
#      drifts over the minutes between the main rows' baseline and hookgate runs; the median
#      and range of the rounds say how far to trust those rows.
#
# Bounded: each flat-out run lasts DURATION s (and at most CAP requests), the open-loop runs
# RATE_SECS s, the backlog BACKLOG requests; loopback only. Env knobs (defaults):
#   DURATION=10 CONNS=64 WRK_THREADS=2 CAP=400000 RATE=2000 RATE_SECS=10 BACKLOG=100000
#   WEBHOOK=1 (0 skips the adnanh/webhook row) PROFILE=0 (1: perf record -g hookgate flat out)
#   PAIRS=3 (0 skips the alternating rounds) PACE=0.95 (the paced rounds offer PACE × raw)
# Usage: scripts/bench.sh            (release build; RabbitMQ via scripts/ensure-rabbitmq.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
CAP="${CAP:-400000}"
PACE="${PACE:-0.95}"
RATE="${RATE:-2000}"
RATE_SECS="${RATE_SECS:-10}"
BACKLOG="${BACKLOG:-100000}"
WEBHOOK="${WEBHOOK:-1}"
PROFILE="${PROFILE:-0}"
PAIRS="${PAIRS:-3}"
AMQP="amqp://guest:guest@127.0.0.1:5672/%2f"
TARGET="${CARGO_TARGET_DIR:-target}/release"
loadavg0="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d)"
chmod 755 "$work"   # the private RabbitMQ node runs as the rabbitmq user under it
pids=()
node=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$node" ] && rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
  # The shared broker's queues of this run, also when it stopped early: a left queue of a
  # million 7 KB messages slows the broker for every run after it (session 22).
  if [ -n "${suffix:-}" ]; then
    rabbitmqctl -q list_queues name 2>/dev/null | grep -- "$suffix\$" |
      while read -r q; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done ||
      true # none left (grep found nothing): under `set -e -o pipefail` that was the exit code
  fi
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "bench: $*" >&2; }

need() { command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2 (Debian)"; SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  [ -n "${apt_updated:-}" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null; }
scripts/ensure-rabbitmq.sh >&2
need wrk wrk
need openssl openssl
[ "$WEBHOOK" = 1 ] && need webhook webhook
cargo build -q --release --locked --bin hookgate --example load --example baseline >&2

# ---------- helpers ----------
wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  say "port $1 never opened"; return 1; }
tck=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# Ticks the hypervisor gave to other guests while ours wanted the CPU (counted as busy above).
machine_steal() { awk '/^cpu / { print $9 }' /proc/stat; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
calc() { awk "BEGIN { printf \"%s\", $1 }"; }
broker_pid=$(ss -ltnpH 'sport = :5672' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
qcount() { rabbitmqctl -q ${2:+-n "$2"} list_queues name messages 2>/dev/null | awk -v q="$1" '$1==q {print $2}'; }
qbytes() { rabbitmqctl -q ${2:+-n "$2"} list_queues name message_bytes 2>/dev/null | awk -v q="$1" '$1==q {print $2}'; }
# Events hookgate itself counted as accepted (wrk misses the answers in flight when it stops).
accepted() { curl -s "http://127.0.0.1:$1/metrics" | awk '/requests_total[{]/ && /outcome="accepted"/ { s += $NF } END { print s + 0 }'; }
pending() { curl -s "http://127.0.0.1:$1/readyz" | sed -n 's/.*"outbox_pending":\([0-9]*\).*/\1/p'; }
# Waits until the outbox is empty; prints the time it happened (s since epoch, fractional).
wait_drained() { local admin=$1 limit=$2 end=$((SECONDS + $2)) p
  while [ $SECONDS -lt $end ]; do p=$(pending "$admin"); [ "${p:-x}" = 0 ] && { date +%s.%N; return 0; }; sleep 0.05; done
  say "outbox not drained within ${limit}s (pending ${p:-?})"; date +%s.%N; return 1; }
# Waits (at most $1 s) until RabbitMQ used under a tenth of a core over the last second.
broker_settle() { local end=$((SECONDS + $1)) b0
  while [ $SECONDS -lt $end ]; do b0=$(ticks "$broker_pid"); sleep 1
    [ $(( $(ticks "$broker_pid") - b0 )) -lt $((tck / 10)) ] && return 0; done
  say "RabbitMQ still busy after $1 s"; }
sample_rss() { while kill -0 "$1" 2>/dev/null; do rss_kb "$1" >>"$2" 2>/dev/null || true; sleep 0.2; done; }
max_of() { sort -n "$1" | tail -1; }

suffix="$(date +%s)-$$"
github_fixture "$work"

declare -A R   # results: R[label.key]=value

# Flat out with wrk against URL; server PID (and its label) for CPU. Sets R[label.*].
flat() { local label=$1 url=$2 pid=$3 t0 b0 m0 st0 k0 out
  b0=$(ticks "$broker_pid"); m0=$(machine_busy); st0=$(machine_steal); k0=$(ticks "$pid")
  t0=$(date +%s.%N)
  out=$( { TIMEFORMAT='GEN %U %S'; time BENCH_BODY="$body" BENCH_SIG="$sig" BENCH_ID="$label-$suffix" \
      BENCH_MAX_PER_THREAD=$((CAP / WRK_THREADS)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" \
      --timeout 10s -s scripts/bench-github.lua "$url" ; } 2>&1 )
  R[$label.t0]=$t0
  R[$label.srv_ticks]=$(( $(ticks "$pid") - k0 ))
  R[$label.broker_ticks]=$(( $(ticks "$broker_pid") - b0 ))
  R[$label.machine_ticks]=$(( $(machine_busy) - m0 ))
  R[$label.steal_ticks]=$(( $(machine_steal) - st0 ))
  local wl; wl=$(grep '^WRK' <<<"$out"); local gl; gl=$(grep '^GEN' <<<"$out")
  for kv in $wl; do case $kv in *=*) R[$label.${kv%%=*}]=${kv#*=};; esac; done
  R[$label.gen_s]=$(awk '{print $2 + $3}' <<<"$gl")
  [ "${R[$label.capped]}" = 0 ] || say "$label: hit the CAP of $CAP requests before ${DURATION}s: raise CAP"
  say "$label: ${R[$label.rps]} req/s, ok ${R[$label.ok]}/${R[$label.requests]}, server $(calc "${R[$label.srv_ticks]}/$tck") s CPU, wrk $(calc "${R[$label.gen_s]}") s CPU, $(calc "${R[$label.steal_ticks]}/$tck") s stolen"
}
# Open loop at RATE with examples/load.rs. Sets R[label.lat_*].
openloop() { local label=$1 url=$2 line
  # What the disk gives one durable write right before: on a shared host it moves from minute
  # to minute, and the open loop's p99 with it (docs/benchmarks.md, session 19).
  line=$("$TARGET/examples/baseline" --mode sync-probe --count 500 --body-bytes 8192 --path "$work/sync-probe") || line="sync-probe failed"
  say "$label disk: $line"
  for kv in $line; do case $kv in *=*) R[$label.sync_${kv%%=*}]=${kv#*=};; esac; done
  line=$("$TARGET/examples/load" --url "$url" --secret "$SECRET" --rate "$RATE" --count $((RATE * RATE_SECS)) \
    --concurrency 512 --body-bytes $BODY_BYTES --max-secs $((RATE_SECS + 30)) --warmup-secs 1 --label "$label" --id-prefix "$label-$suffix")
  say "$line"
  for kv in $line; do case $kv in *=*) R[$label.lat_${kv%%=*}]=${kv#*=};; esac; done
}

published() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^hookgate_published_total[{]/ { s += $NF } END { print s + 0 }'; }
# Offers R[label.offered] req/s for DURATION s (bench-lib.sh's paced_load), then waits for the
# relay. Sets R[label.held_eps]: events confirmed per second from 1 s into the load to its end
# (the rate held while offered; a falling-behind relay reads lower), R[label.left] (pending
# when the load ended), R[label.tail] (the drain after it), R[label.gen_us] (the generator's
# CPU per request), R[label.stolen] (cores the hypervisor took meanwhile).
paced() { local label=$1 url=$2 admin=$3 rate lp p1 t1 p2 t2 line t_drained st1
  rate=${R[$label.offered]}
  paced_load "$url" "$rate" "$DURATION" "$label-$suffix" "$label" >"$work/$label.load" & lp=$!; pids+=("$lp")
  # Each sample's time: the middle of its /metrics request (slower under load).
  sample() { local a b; a=$(date +%s.%N); p=$(published "$admin"); b=$(date +%s.%N); t=$(calc "sprintf(\"%.6f\", ($a + $b) / 2)"); }
  local p t
  sleep 1; sample; p1=$p t1=$t; st1=$(machine_steal)
  wait "$lp"; sample; p2=$p t2=$t
  # Cores the hypervisor took over the same window (a round that falls behind: was it us).
  R[$label.stolen]=$(calc "sprintf(\"%.2f\", ($(machine_steal) - $st1) / $tck / ($t2 - $t1))")
  R[$label.left]=$(pending "$admin")
  t_drained=$(wait_drained "$admin" 300) || true
  line=$(grep '^RESULT' "$work/$label.load")
  for kv in $line; do case $kv in *=*) R[$label.${kv%%=*}]=${kv#*=};; esac; done
  R[$label.held_eps]=$(calc "($p2 - $p1) / ($t2 - $t1)")
  R[$label.tail]=$(calc "$t_drained - $t2")
  R[$label.gen_us]=$(calc "${R[$label.client_cpu_s]} * 1e6 / (${R[$label.sent]} > 0 ? ${R[$label.sent]} : 1)")
  say "$label: offered $rate/s, ok ${R[$label.ok]}/${R[$label.sent]}, confirmed ${R[$label.held_eps]}/s while offered, ${R[$label.left]} pending at its end, drained $(calc "${R[$label.tail]}") s later; generator $(calc "${R[$label.gen_us]}") µs/request; ${R[$label.stolen]} of a core stolen"
}

hg_start() { # label, amqp url, queue -> sets hg_pid hg_port hg_admin
  hg_port=$(free_port); hg_admin=$(free_port)
  hg_config "$work/$1.toml" "$work/store-$1" "$2" "$3" "$hg_port" "$hg_admin"
  RUST_LOG=warn "$TARGET/hookgate" serve -c "$work/$1.toml" 2>"$work/$1.log" & hg_pid=$!; pids+=("$hg_pid")
  wait_port "$hg_port"; wait_port "$hg_admin"; sleep 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---------- baselines ----------
base_port=$(free_port)
for mode in bare hmac publish; do
  q="bench-base-$suffix"
  "$TARGET/examples/baseline" --mode "$mode" --listen "127.0.0.1:$base_port" --secret "$SECRET" \
    --amqp-url "$AMQP" --queue "$q" 2>"$work/base-$mode.log" & bpid=$!; pids+=("$bpid")
  wait_port "$base_port"
  flat "$mode" "http://127.0.0.1:$base_port/hooks/gh" "$bpid"
  [ "$mode" = bare ] && openloop bare "http://127.0.0.1:$base_port/hooks/gh"
  stop "$bpid"
  if [ "$mode" = publish ]; then
    R[publish.queued]=$(qcount "$q"); rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  fi
done
if [ "$WEBHOOK" = 1 ]; then
  wh_port=$(free_port)
  cat >"$work/hooks.json" <<JSON
[{"id": "gh", "execute-command": "/bin/true", "response-message": "ok",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$SECRET",
    "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}}]
JSON
  webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$wh_port" >"$work/webhook.log" 2>&1 & wpid=$!; pids+=("$wpid")
  wait_port "$wh_port"
  flat webhook "http://127.0.0.1:$wh_port/hooks/gh" "$wpid"
  stop "$wpid"
fi

# ---------- hookgate, relay on the shared broker ----------
# The publish baseline's queue was just deleted: RabbitMQ cleans its message store up for a few
# seconds after, on the same cores. hookgate (and the raw publisher below) start on an idle broker.
broker_settle 30
q="bench-$suffix"
hg_start hookgate "$AMQP" "$q"
R[mem.idle_kb]=$(rss_kb "$hg_pid")
k_start=$(ticks "$hg_pid")
flat hookgate "http://127.0.0.1:$hg_port/hooks/gh" "$hg_pid"
t_drained=$(wait_drained "$hg_admin" 300) || true
R[hookgate.e2e_ticks]=$(( $(ticks "$hg_pid") - k_start ))
R[hookgate.acc]=$(accepted "$hg_admin")
R[hookgate.e2e_secs]=$(calc "$t_drained - ${R[hookgate.t0]}")
R[hookgate.queued]=$(qcount "$q")
R[mem.flat_hwm_kb]=$(hwm_kb "$hg_pid")
# The flat-out run left its events in the queue (nobody consumes them): RabbitMQ would still be
# paging them to its message store during the open loop, on the same cores and disk. Counted
# above, they go, and the open loop starts once the broker is idle again.
rabbitmqctl -q purge_queue "$q" >/dev/null 2>&1 || true
broker_settle 30
openloop hookgate "http://127.0.0.1:$hg_port/hooks/gh"
wait_drained "$hg_admin" 120 >/dev/null || true
if [ "$PROFILE" = 1 ]; then
  say "profiling hookgate flat out (perf record -g, 10 s)"
  perf record -g -o "$work/perf.data" -p "$hg_pid" -- sleep 10 >/dev/null 2>&1 & ppid=$!
  DURATION=12 flat profiled "http://127.0.0.1:$hg_port/hooks/gh" "$hg_pid"
  wait "$ppid" || true
  # Release builds have no frame pointers, so the call chains are mostly noise: the flat
  # self-time lists (by thread, by object, by symbol) are what to read.
  { echo "-- by thread (perf report --no-children --sort comm)"
    perf report -i "$work/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo "-- by object (--sort dso)"
    perf report -i "$work/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -10
    echo "-- top symbols, self time (--no-children --sort comm,dso,sym -g none)"
    perf report -i "$work/perf.data" --no-children --sort comm,dso,sym -g none --percent-limit 0.6 --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | cut -c1-160 | head -40
  } >"$work/perf.txt" || true
fi
stop "$hg_pid"
rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true

# ---------- raw lapin publisher, same number of events ----------
# raw_publish LABEL N: N (1,000..200,000) events through the raw publisher; sets R[LABEL.*].
raw_publish() { local n=$2 rq="bench-raw-$suffix" line
  [ "$n" -gt 200000 ] && n=200000; [ "$n" -lt 1000 ] && n=1000
  line=$("$TARGET/examples/baseline" --mode raw-publish --amqp-url "$AMQP" --queue "$rq" --exchange "bench-raw" \
    --count "$n" --body-bytes $BODY_BYTES --window 512)
  say "$1: $line"
  for kv in $line; do case $kv in *=*) R[$1.${kv%%=*}]=${kv#*=};; esac; done
  rabbitmqctl -q delete_queue "$rq" >/dev/null 2>&1 || true; }
broker_settle 30
raw_publish raw "${R[hookgate.acc]}"

# ---------- hookgate, broker down (pure ingest) ----------
hg_start nobroker "amqp://guest:guest@127.0.0.1:1/%2f" "unused"
flat nobroker "http://127.0.0.1:$hg_port/hooks/gh" "$hg_pid"
R[nobroker.acc]=$(accepted "$hg_admin")
# The same open loop with the broker down: the store's own latency, without RabbitMQ's fsyncs
# on the same disk (every fdatasync here flushes the whole device, the broker's writes too).
broker_settle 30
openloop nobroker "http://127.0.0.1:$hg_port/hooks/gh"
stop "$hg_pid"; rm -rf "$work/store-nobroker"

# ---------- memory: backlog with a private broker stopped, then drain ----------
nport=$(free_port); dist=$(free_port); node="hgbench$nport@localhost"
nbase="$work/rabbit"; mkdir -p "$nbase"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$nport" >"$nbase/rabbitmq.conf"
echo '[].' >"$nbase/enabled_plugins"; chown -R rabbitmq:rabbitmq "$nbase" 2>/dev/null || true
node_start() { RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$nport" RABBITMQ_DIST_PORT="$dist" \
  RABBITMQ_CONFIG_FILE="$nbase/rabbitmq" RABBITMQ_MNESIA_BASE="$nbase/mnesia" RABBITMQ_LOG_BASE="$nbase/log" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$nbase/enabled_plugins" rabbitmq-server -detached >/dev/null 2>&1
  wait_port "$nport"; rabbitmqctl -n "$node" await_startup >/dev/null 2>&1 || sleep 3; }
connected() { curl -s "http://127.0.0.1:$1/readyz" | grep -q '"connected":true'; }
node_start
bq="bench-backlog-$suffix"
hg_start backlog "amqp://guest:guest@127.0.0.1:$nport/%2f" "$bq"
for _ in $(seq 1 100); do connected "$hg_admin" && break; sleep 0.2; done
rabbitmqctl -n "$node" stop >/dev/null 2>&1
for _ in $(seq 1 100); do connected "$hg_admin" || break; sleep 0.2; done
R[mem.backlog_start_kb]=$(rss_kb "$hg_pid")
sample_rss "$hg_pid" "$work/rss-build" & spid=$!; pids+=("$spid")
line=$("$TARGET/examples/load" --url "http://127.0.0.1:$hg_port/hooks/gh" --secret "$SECRET" --count "$BACKLOG" \
  --concurrency 64 --body-bytes $BODY_BYTES --max-secs $((BACKLOG / 200 + 120)) --label backlog --id-prefix "backlog-$suffix")
kill "$spid" 2>/dev/null || true
say "$line"
for kv in $line; do case $kv in *=*) R[backlog.${kv%%=*}]=${kv#*=};; esac; done
R[mem.backlog_end_kb]=$(rss_kb "$hg_pid")
R[mem.build_peak_kb]=$(max_of "$work/rss-build")
R[backlog.pending]=$(pending "$hg_admin")
R[disk.store_bytes]=$(du -sb "$work/store-backlog" | cut -f1)
sample_rss "$hg_pid" "$work/rss-drain" & spid=$!; pids+=("$spid")
t_up=$(date +%s.%N)
node_start
for _ in $(seq 1 600); do connected "$hg_admin" && break; sleep 0.1; done   # reconnect backoff
t_back=$(date +%s.%N)
R[backlog.reconnect_secs]=$(calc "$t_back - $t_up")
t_done=$(wait_drained "$hg_admin" $((BACKLOG / 100 + 300))) || true
kill "$spid" 2>/dev/null || true
R[mem.drain_peak_kb]=$(max_of "$work/rss-drain")
R[mem.drain_end_kb]=$(rss_kb "$hg_pid")
R[backlog.drain_secs]=$(calc "$t_done - $t_back")
R[backlog.queued]=$(qcount "$bq" "$node")
R[disk.envelope_bytes]=$(qbytes "$bq" "$node")
stop "$hg_pid"
rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true; node=""

# ---------- alternating pairs: bare, hookgate relay on, hookgate broker down ----------
for i in $(seq 1 "$PAIRS"); do
  "$TARGET/examples/baseline" --mode bare --listen "127.0.0.1:$base_port" --secret "$SECRET" \
    --amqp-url "$AMQP" --queue unused 2>"$work/pair-bare.log" & bpid=$!; pids+=("$bpid")
  wait_port "$base_port"
  flat "pair$i-bare" "http://127.0.0.1:$base_port/hooks/gh" "$bpid"
  stop "$bpid"
  q="bench-pair-$suffix"
  hg_start "pair$i-on" "$AMQP" "$q"
  flat "pair$i-on" "http://127.0.0.1:$hg_port/hooks/gh" "$hg_pid"
  t_drained=$(wait_drained "$hg_admin" 300) || true
  R[pair$i-on.acc]=$(accepted "$hg_admin")
  R[pair$i-on.e2e_eps]=$(calc "${R[pair$i-on.acc]} / ($t_drained - ${R[pair$i-on.t0]})")
  stop "$hg_pid"; rm -rf "$work/store-pair$i-on"
  rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  # The end-to-end row's baseline again, right after this round's hookgate run: the raw
  # publisher's rate moves with the broker's share of the cores as much as hookgate's does.
  broker_settle 30
  raw_publish "pair$i-raw" "${R[pair$i-on.acc]}"
  say "pair$i: end to end ${R[pair$i-on.e2e_eps]} events/s"
  # Sustained: PACE × this round's raw rate offered for DURATION s, not flat out: the
  # events confirmed per second while it is offered (does hookgate hold it end to end).
  broker_settle 30
  R[pair$i-paced.offered]=$(calc "int($PACE * ${R[pair$i-raw.eps]})")
  hg_start "pair$i-paced" "$AMQP" "$q"
  paced "pair$i-paced" "http://127.0.0.1:$hg_port/hooks/gh" "$hg_admin"
  stop "$hg_pid"; rm -rf "$work/store-pair$i-paced"
  rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  broker_settle 30
  hg_start "pair$i-down" "amqp://guest:guest@127.0.0.1:1/%2f" "unused"
  flat "pair$i-down" "http://127.0.0.1:$hg_port/hooks/gh" "$hg_pid"
  stop "$hg_pid"; rm -rf "$work/store-pair$i-down"
done

# ---------- the table ----------
us_per() { calc "$1 * 1e6 / $tck / ($2 > 0 ? $2 : 1)"; }   # ticks, requests -> µs
ratio() { calc "($2 > 0) ? sprintf(\"%.3f\", $1 / $2) : \"-\""; }
mb() { calc "sprintf(\"%.0f MB\", $1 / 1024)"; }
f0() { calc "sprintf(\"%.0f\", $1)"; }
f1() { calc "sprintf(\"%.1f\", $1)"; }
cores() { calc "sprintf(\"%.2f\", $1 / $tck / $2)"; }
slashed() { local IFS=/; echo "$*" | sed 's#/# / #g'; }   # a / b / c
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

hg_cpu=$(us_per "${R[hookgate.e2e_ticks]}" "${R[hookgate.acc]}")
hg_ingest_cpu=$(us_per "${R[hookgate.srv_ticks]}" "${R[hookgate.acc]}")
nb_cpu=$(us_per "${R[nobroker.srv_ticks]}" "${R[nobroker.acc]}")
hm_cpu=$(us_per "${R[hmac.srv_ticks]}" "${R[hmac.ok]}")
bare_cpu=$(us_per "${R[bare.srv_ticks]}" "${R[bare.ok]}")
pub_cpu=$(us_per "${R[publish.srv_ticks]}" "${R[publish.ok]}")
hg_eps=$(calc "${R[hookgate.acc]} / ${R[hookgate.e2e_secs]}")
drain_eps=$(calc "(${R[backlog.ok]} - 0) / ${R[backlog.drain_secs]}")
{
echo "| metric | hookgate | baseline | ratio | target |"
echo "|---|---|---|---|---|"
stolen() { cores "${R[$1.steal_ticks]}" "${R[$1.secs]}"; }   # cores the hypervisor took in a run
echo "| ingest flat out, req/s (relay on; ${R[hookgate.queued]:-?} in the queue of ${R[hookgate.acc]} accepted; cores stolen by the hypervisor meanwhile: $(stolen hookgate), bare's run $(stolen bare)) | $(f0 "${R[hookgate.rps]}") | bare actix 200: $(f0 "${R[bare.rps]}") | $(ratio "${R[hookgate.rps]}" "${R[bare.rps]}") | ≥ 0.15 (aim 0.20) |"
echo "| ingest flat out, req/s, broker down (pure ingest; $(stolen nobroker) stolen) | $(f0 "${R[nobroker.rps]}") | bare actix 200: $(f0 "${R[bare.rps]}") | $(ratio "${R[nobroker.rps]}" "${R[bare.rps]}") | ≥ 0.15 |"
if [ "$PAIRS" -gt 0 ]; then
  bares=(); on=(); down=()
  for i in $(seq 1 "$PAIRS"); do b=${R[pair$i-bare.rps]}
    bares+=("$(f0 "$b")"); on+=("$(ratio "${R[pair$i-on.rps]}" "$b")"); down+=("$(ratio "${R[pair$i-down.rps]}" "$b")"); done
  echo "| the same two ratios in $PAIRS alternating rounds (bare $(slashed "${bares[@]}") req/s): relay on | — | — | $(slashed "${on[@]}") (median $(median "${on[@]}")) | ≥ 0.15 |"
  echo "| … broker down | — | — | $(slashed "${down[@]}") (median $(median "${down[@]}")) | ≥ 0.15 |"
fi
echo "| ingest flat out vs an actix server checking the HMAC | $(f0 "${R[hookgate.rps]}") | hmac: $(f0 "${R[hmac.rps]}") | $(ratio "${R[hookgate.rps]}" "${R[hmac.rps]}") | — |"
echo "| ingest flat out vs naive verify+publish+await confirm (${R[publish.queued]:-?} in its queue, wrk saw ${R[publish.ok]} 2xx) | $(f0 "${R[hookgate.rps]}") | publish: $(f0 "${R[publish.rps]}") | $(ratio "${R[hookgate.rps]}" "${R[publish.rps]}") | — |"
[ "$WEBHOOK" = 1 ] && echo "| ingest flat out vs adnanh/webhook 2.8 (verifies, runs /bin/true) | $(f0 "${R[hookgate.rps]}") | webhook: $(f0 "${R[webhook.rps]}") | $(ratio "${R[hookgate.rps]}" "${R[webhook.rps]}") | — |"
echo "| server CPU µs per accepted request (ingest + relay until drained) | $(f1 "$hg_cpu") | hmac: $(f1 "$hm_cpu") | $(ratio "$hg_cpu" "$hm_cpu") | ≤ 2.5 |"
echo "| server CPU µs per accepted request, during the load only | $(f1 "$hg_ingest_cpu") | hmac: $(f1 "$hm_cpu") | $(ratio "$hg_ingest_cpu" "$hm_cpu") | — |"
echo "| server CPU µs per accepted request, broker down | $(f1 "$nb_cpu") | hmac: $(f1 "$hm_cpu") | $(ratio "$nb_cpu" "$hm_cpu") | — |"
echo "| (other baselines' server CPU µs/request) | — | bare $(f1 "$bare_cpu"), publish $(f1 "$pub_cpu") | — | — |"
for p in p50 p99 p999; do
  t="—"; [ "$p" = p99 ] && t="< 5 ms"
  echo "| latency ${p/p999/p99.9} at $RATE req/s open loop, ms (hookgate ${R[hookgate.lat_ok]}/${R[hookgate.lat_sent]} ok; generator lag p99 ${R[hookgate.lat_lag_p99_ms]} / ${R[bare.lat_lag_p99_ms]} ms) | ${R[hookgate.lat_${p}_ms]} | bare: ${R[bare.lat_${p}_ms]} | $(ratio "${R[hookgate.lat_${p}_ms]}" "${R[bare.lat_${p}_ms]}") | $t |"
done
for p in p50 p99 p999; do
  echo "| latency ${p/p999/p99.9}, broker down, ms (${R[nobroker.lat_ok]}/${R[nobroker.lat_sent]} ok; generator lag p99 ${R[nobroker.lat_lag_p99_ms]} ms) | ${R[nobroker.lat_${p}_ms]} | bare: ${R[bare.lat_${p}_ms]} | $(ratio "${R[nobroker.lat_${p}_ms]}" "${R[bare.lat_${p}_ms]}") | — |"
done
sync_txt() { echo "${R[$1.sync_p50_ms]:-?} / ${R[$1.sync_p99_ms]:-?} / ${R[$1.sync_max_ms]:-?}"; }
echo "| the disk right before each open loop: 8 KB write + fdatasync, p50 / p99 / max of 500, ms (what one durable write costs this minute) | relay on: $(sync_txt hookgate); broker down: $(sync_txt nobroker) | bare: $(sync_txt bare) | — | — |"
echo "| sustained end to end, events/s (${R[hookgate.acc]} events, first request → last confirm) | $(f0 "$hg_eps") | raw lapin, 512 in flight (${R[raw.acked]} events): $(f0 "${R[raw.eps]}") | $(ratio "$hg_eps" "${R[raw.eps]}") | ≥ 0.9 |"
if [ "$PAIRS" -gt 0 ]; then
  e2e=(); pairs_txt=()
  for i in $(seq 1 "$PAIRS"); do
    e2e+=("$(ratio "${R[pair$i-on.e2e_eps]}" "${R[pair$i-raw.eps]}")")
    pairs_txt+=("$(f0 "${R[pair$i-on.e2e_eps]}")/$(f0 "${R[pair$i-raw.eps]}")"); done
  echo "| the same in $PAIRS alternating rounds (hookgate/raw events/s: $(IFS=,; echo "${pairs_txt[*]}" | sed 's/,/, /g')) | — | — | $(slashed "${e2e[@]}") (median $(median "${e2e[@]}")) | ≥ 0.9 |"
  paced=(); paced_txt=()
  for i in $(seq 1 "$PAIRS"); do
    paced+=("$(ratio "${R[pair$i-paced.held_eps]}" "${R[pair$i-raw.eps]}")")
    paced_txt+=("${R[pair$i-paced.offered]}→$(f0 "${R[pair$i-paced.held_eps]}") ($(ratio "${R[pair$i-paced.held_eps]}" "${R[pair$i-paced.offered]}"); ${R[pair$i-paced.left]} / $(f1 "${R[pair$i-paced.tail]}") s; $(f1 "${R[pair$i-paced.gen_us]}") µs; ${R[pair$i-paced.stolen]} stolen)"); done
  echo "| sustained, paced: $PACE × the round's raw rate offered for ${DURATION} s, events confirmed per second while offered, from 1 s in to the end (offered→confirmed events/s (confirmed / offered: held when ≥ 0.98; pending at the end of the load / drained in; the generator's CPU per request; cores stolen by the hypervisor meanwhile): $(IFS=,; echo "${paced_txt[*]}" | sed 's/,/, /g')) | — | — | $(slashed "${paced[@]}") (median $(median "${paced[@]}")) | ≥ 0.9, held |"
fi
echo "| RSS idle | $(mb "${R[mem.idle_kb]}") | — | — | < 64 MB |"
echo "| RSS peak (VmHWM) flat out | $(mb "${R[mem.flat_hwm_kb]}") | — | — | < 256 MB |"
echo "| RSS while a backlog of $BACKLOG builds up, broker stopped: start → peak → end (${R[backlog.ok]} accepted, ${R[backlog.pending]} pending) | $(mb "${R[mem.backlog_start_kb]}") → $(mb "${R[mem.build_peak_kb]}") → $(mb "${R[mem.backlog_end_kb]}") | — | — | flat |"
echo "| RSS while it drains, broker back: peak → end | $(mb "${R[mem.drain_peak_kb]}") → $(mb "${R[mem.drain_end_kb]}") | — | — | flat |"
echo "| drain, events/s from reconnect (broker restart to reconnect: $(f1 "${R[backlog.reconnect_secs]}") s; ${R[backlog.queued]:-?} of ${R[backlog.ok]} in the queue afterwards) | $(f0 "$drain_eps") | raw lapin: $(f0 "${R[raw.eps]}") | $(ratio "$drain_eps" "${R[raw.eps]}") | — |"
echo "| disk: store bytes with the backlog pending vs envelope bytes in the queue | $(mb "$(calc "${R[disk.store_bytes]} / 1024")") | $(mb "$(calc "${R[disk.envelope_bytes]:-0} / 1024")") | $(ratio "${R[disk.store_bytes]}" "${R[disk.envelope_bytes]:-0}") | — |"
} >"$work/table"

echo
echo "## hookgate benchmark, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src providers || echo ' (+ local changes)')"
echo
cat "$work/table"
echo
echo "Command: DURATION=$DURATION CONNS=$CONNS WRK_THREADS=$WRK_THREADS CAP=$CAP RATE=$RATE RATE_SECS=$RATE_SECS BACKLOG=$BACKLOG WEBHOOK=$WEBHOOK PAIRS=$PAIRS scripts/bench.sh"
echo "Flat out: wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}') -t$WRK_THREADS -c$CONNS -d${DURATION}s, keep-alive (hookgate: trusted proxy), ${BODY_BYTES}-byte body; open loop: examples/load.rs --rate $RATE for ${RATE_SECS}s after a 1 s warm-up, ≤ 512 in flight; paced: examples/load.rs --rate ($PACE × raw) --tick-us 1000 for ${DURATION}s; backlog: examples/load.rs, 64 in flight."
echo
echo "Machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo), store on $(df -T "$work" | awk 'NR==2 {print $1" ("$2")"}'), rotational=$(cat /sys/block/"$(basename "$(df "$work" | awk 'NR==2 {print $1}')")"/queue/rotational 2>/dev/null || echo ?), load average before the run: ${loadavg0:-$(cut -d' ' -f1-3 /proc/loadavg)}"
echo
# fdatasync latency of this disk, where the store lives (the floor of any durable accept).
dd if=/dev/zero of="$work/sync-probe" bs=8k count=200 oflag=dsync 2>"$work/dd.txt" || true
echo "Disk: 200 × 8 KB writes with O_DSYNC (dd): $(awk -F', ' '/copied/ { print $3 }' "$work/dd.txt") → $(awk -F', ' '/copied/ { split($3, t, " "); printf "%.2f ms per synced write", t[1] * 1000 / 200 }' "$work/dd.txt")"
rm -f "$work/sync-probe"
echo
echo "Where the CPU went during each flat-out run (cores busy on average, of $(nproc)):"
echo
echo "| run | req/s | server | load generator (wrk) | RabbitMQ (shared) | stolen by the hypervisor | everything else on the machine |"
echo "|---|---|---|---|---|---|---|"
for l in bare hmac publish webhook hookgate nobroker profiled; do
  [ -n "${R[$l.secs]:-}" ] || continue
  s=${R[$l.secs]}
  gen_ticks=$(calc "${R[$l.gen_s]} * $tck")
  other=$(calc "${R[$l.machine_ticks]} - ${R[$l.srv_ticks]} - $gen_ticks - ${R[$l.broker_ticks]} - ${R[$l.steal_ticks]}")
  echo "| $l | $(f0 "${R[$l.rps]}") | $(cores "${R[$l.srv_ticks]}" "$s") | $(cores "$gen_ticks" "$s") | $(cores "${R[$l.broker_ticks]}" "$s") | $(cores "${R[$l.steal_ticks]}" "$s") | $(cores "$other" "$s") |"
done
echo
for l in hookgate bare; do
  s=${R[$l.secs]}; busy=$(calc "${R[$l.machine_ticks]} / $tck / $s")
  if [ "$(calc "($busy >= 0.9 * $(nproc)) ? 1 : 0")" = 1 ]; then
    echo "Limit ($l flat out): CPU — the machine's $(nproc) cores were $(calc "sprintf(\"%.0f\", 100 * $busy / $(nproc))") % busy, $(calc "sprintf(\"%.0f\", 100 * ${R[$l.steal_ticks]} / $tck / $s / $(nproc))") % of them stolen by the hypervisor (split above)."
  else
    echo "Limit ($l flat out): not the CPU ($(calc "sprintf(\"%.2f\", $busy)") of $(nproc) cores busy): the server was waiting (disk sync, broker, locks)."
  fi
done
if [ -s "$work/perf.txt" ]; then
  echo; echo "perf record -g -p HOOKGATE -- sleep 10, hookgate flat out (the \"profiled\" run):"; echo '```'; cat "$work/perf.txt"; echo '```'
fi
