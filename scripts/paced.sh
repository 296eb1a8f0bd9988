#!/usr/bin/env bash
# Paced load against one hookgate, for A/B measurements of the CPU an accepted event costs at a
# fixed rate (issue #10's sustained row is decided at ~0.9 of what the broker can take, where
# commits and wake-ups are shared by few events; flat out they are not). Not a benchmark row:
# scripts/bench.sh is; this is the tool behind docs/benchmarks.md's paced A/B tables.
#
#   scripts/paced.sh RATE SECS            RATE req/s for SECS s (relay on, shared broker),
#                                          then until the outbox is empty; one line:
#                                          accepted, pending when the load ended, drain time,
#                                          confirmed/s, CPU µs per event of hookgate / RabbitMQ /
#                                          the generator, context switches per event, events
#                                          per commit
#   BIN_B=path scripts/paced.sh RATE SECS  the same, alternating BIN and BIN_B, PAIRS times
#
# The load: bench-lib.sh's paced_load (GEN=load, the default: examples/load.rs, ~23 µs of its
# CPU per request at 6,000 req/s), or wrk paced by bench-github.lua's delay() (GEN=wrk: 35-50
# µs; the tool of sessions 13-21's tables).
# Env: BIN (default target/release/hookgate, built), BIN_B, PAIRS (3), DOWN=1 (no broker: pure
# ingest), STORE_EXTRA (TOML lines added to [store], e.g. "commit_delay_us = 0"), STORE_EXTRA_B
# (the same for BIN_B's runs; default STORE_EXTRA), THREADS=1 (CPU per thread name too),
# LATENCY=1 (examples/load.rs open loop at RATE instead of wrk: p50/p99 corrected for
# coordinated omission), WARM=S (wrk flat out for S s first, in the same process, as bench.sh
# does before its open loop: a grown store and dedup table; docs/benchmarks.md, session 15),
# UNROUTABLE=N (only pushes are bound, and N deliveries of an event type nothing is bound to
# are sent, spread over the load: each is retried, then dead; does the relay keep up meanwhile;
# docs/benchmarks.md, session 18), FULL_SECS=S (the queue is full for the first S s of the load:
# at most 3000 messages, `reject-publish`, by a policy then cleared; does the relay catch up
# after the nacks).
# Loopback only; every run is bounded by SECS (+ WARM) plus a 60 s drain.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RATE=${1:?usage: scripts/paced.sh RATE SECS}
SECS=${2:?usage: scripts/paced.sh RATE SECS}
PAIRS=${PAIRS:-3}
TARGET="${CARGO_TARGET_DIR:-target}/release"
scripts/ensure-rabbitmq.sh >&2
command -v wrk >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then
  cargo build -q --release --locked --bin hookgate --example load >&2
  BIN="$TARGET/hookgate"
fi
{ [ "${LATENCY:-0}" = 1 ] || [ "${GEN:-load}" = load ]; } && [ ! -x "$TARGET/examples/load" ] && cargo build -q --release --locked --example load >&2

work=$(mktemp -d); hp=""
cleanup() { [ -n "$hp" ] && { kill "$hp" 2>/dev/null; wait "$hp" 2>/dev/null; }; rm -rf "$work"; }
trap cleanup EXIT
github_fixture "$work"
tck=$(getconf CLK_TCK)
broker_pid=$(ss -ltnpH 'sport = :5672' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
# Per thread name: voluntary switches, involuntary switches, CPU ticks (summed over threads).
threads() { for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm" 2>/dev/null)" \
      "$(awk '/^voluntary/ {v=$2} /^nonvol/ {n=$2} END {print v + 0, n + 0}' "$t/status" 2>/dev/null)" \
      "$(ticks "${t#/proc/}" 2>/dev/null || echo 0)"; done 2>/dev/null |
  awk 'NF == 4 {v[$1] += $2; n[$1] += $3; c[$1] += $4} END {for (k in v) print k, v[k], n[k], c[k]}' | sort; }

run() { # label, binary, store extra
  local label=$1 bin=$2 extra=$3 port admin q amqp
  port=$(free_port); admin=$(free_port); q="paced-$$-$RANDOM"
  amqp="amqp://guest:guest@127.0.0.1:5672/%2f"; [ "${DOWN:-0}" = 1 ] && amqp="amqp://guest:guest@127.0.0.1:1/%2f"
  hg_config "$work/c.toml" "$work/store" "$amqp" "$q" "$port" "$admin" "$extra"
  [ "${UNROUTABLE:-0}" -gt 0 ] && sed -i 's/^bindings = \["#"\]/bindings = ["gh.github.push"]/' "$work/c.toml"
  RUST_LOG=warn "$bin" serve -c "$work/c.toml" 2>"$work/hookgate.log" & hp=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$admin") 2>/dev/null && break; sleep 0.1; done; sleep 1
  pending() { curl -s "http://127.0.0.1:$admin/readyz" | sed -n 's/.*"outbox_pending":\([0-9]*\).*/\1/p'; }
  if [ -n "${WARM:-}" ]; then
    # The state bench.sh measures its open loop in: the same process after a flat-out run
    # (a grown store and dedup table), the relay's backlog drained first (at most 60 s).
    BENCH_BODY="$body" BENCH_SIG="$sig" BENCH_ID="warm-$label-$$-$RANDOM" BENCH_MAX_PER_THREAD=100000000 \
      wrk -t2 -c64 -d"${WARM}s" --timeout 10s -s scripts/bench-github.lua "http://127.0.0.1:$port/hooks/gh" >/dev/null
    if [ "${DOWN:-0}" != 1 ]; then for _ in $(seq 600); do [ "$(pending)" = 0 ] && break; sleep 0.1; done; fi
    sleep 5
  fi
  if [ "${LATENCY:-0}" = 1 ]; then
    "$TARGET/examples/load" --url "http://127.0.0.1:$port/hooks/gh" --secret "$SECRET" --rate "$RATE" \
      --count $((RATE * SECS)) --concurrency 512 --body-bytes $BODY_BYTES --max-secs $((SECS + 30)) \
      --warmup-secs 1 --label "$label" --id-prefix "$label-$$-$RANDOM"
  else
    local h0 b0 t0 out left t1 a gen commits
    threads "$hp" >"$work/t0"; h0=$(ticks "$hp"); b0=$(ticks "$broker_pid"); t0=$(date +%s.%N)
    local up=""
    if [ -n "${FULL_SECS:-}" ]; then
      rabbitmqctl -q set_policy "paced-full-$$" "^$q\$" '{"max-length":3000,"overflow":"reject-publish"}' \
        --apply-to queues >/dev/null
      ( sleep "$FULL_SECS"; rabbitmqctl -q clear_policy "paced-full-$$" >/dev/null ) & up="$up $!"
    fi
    if [ "${UNROUTABLE:-0}" -gt 0 ]; then
      # The same signed body under an event type no binding matches (X-GitHub-Event is not
      # signed), one every SECS/(N+1) seconds.
      ( for k in $(seq "$UNROUTABLE"); do sleep "$(awk -v s="$SECS" -v n="$UNROUTABLE" 'BEGIN { print s / (n + 1) }')"
          curl -s -o /dev/null -X POST "http://127.0.0.1:$port/hooks/gh" -H 'Content-Type: application/json' \
            -H 'X-GitHub-Event: unbound' -H "X-GitHub-Delivery: unroutable-$label-$$-$k" \
            -H "X-Hub-Signature-256: $sig" --data-binary @"$body"; done ) & up="$up $!"
    fi
    if [ "${GEN:-load}" = load ]; then
      out=$(paced_load "http://127.0.0.1:$port/hooks/gh" "$RATE" "$SECS" "$label-$$-$RANDOM" "$label")
      out="$out"$'\n'"GEN $(sed -n 's/.*client_cpu_s=\([0-9.]*\).*/\1/p' <<<"$out") 0"
    else
      out=$( { TIMEFORMAT='GEN %U %S'; time BENCH_BODY="$body" BENCH_SIG="$sig" BENCH_ID="$label-$$-$RANDOM" \
        BENCH_MAX_PER_THREAD=100000000 BENCH_RATE_PER_THREAD=$((RATE / 2)) wrk -t2 -c64 -d"${SECS}s" \
        --timeout 10s -s scripts/bench-github.lua "http://127.0.0.1:$port/hooks/gh"; } 2>&1 )
    fi
    left=$(pending)
    # shellcheck disable=SC2086
    [ -n "$up" ] && wait $up
    if [ "${DOWN:-0}" != 1 ]; then for _ in $(seq 3000); do [ "$(pending)" = 0 ] && break; sleep 0.02; done; fi
    t1=$(date +%s.%N)
    threads "$hp" >"$work/t1"
    a=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/requests_total[{]/ && /outcome="accepted"/ { s += $NF } END { print s + 0 }')
    [ "${UNROUTABLE:-0}" -gt 0 ] && echo "$label: $(curl -s "http://127.0.0.1:$admin/readyz" | sed -n 's/.*"dead_letters":\([0-9]*\).*/\1/p') dead letters of $UNROUTABLE unroutable"
    commits=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^hookgate_log_commit_records_count/ {print $NF}')
    gen=$(grep '^GEN' <<<"$out" | awk '{print $2 + $3}')
    local h b cs
    h=$(( $(ticks "$hp") - h0 )); b=$(( $(ticks "$broker_pid") - b0 ))
    cs=$(join "$work/t0" "$work/t1" | awk '{s += $5 - $2 + $6 - $3} END {print s + 0}')
    awk -v L="$label" -v r="$RATE" -v a="$a" -v left="${left:-?}" -v t0="$t0" -v t1="$t1" -v s="$SECS" \
      -v h="$h" -v b="$b" -v g="$gen" -v tck="$tck" -v down="${DOWN:-0}" -v cs="$cs" -v commits="${commits:-0}" \
      'BEGIN { printf "%s rate=%d accepted=%d pending_at_end=%s drain_s=%.2f confirmed_per_s=%.0f hookgate_us=%.1f rabbitmq_us=%.1f gen_us=%.1f switches_per_event=%.2f events_per_commit=%.1f\n",
        L, r, a, left, t1 - t0 - s, a / (t1 - t0), h / tck * 1e6 / a, (down == 1 ? 0 : b / tck * 1e6 / a), g * 1e6 / a, cs / a, (commits > 0 ? a / commits : 0) }'
    if [ "${THREADS:-0}" = 1 ]; then
      join "$work/t0" "$work/t1" | awk -v a="$a" -v tck="$tck" '$7 > $4 {
        printf "  %-16s cpu_us=%.1f voluntary=%.3f involuntary=%.3f per event\n", $1, ($7 - $4) / tck * 1e6 / a, ($5 - $2) / a, ($6 - $3) / a }'
    fi
  fi
  kill "$hp"; wait "$hp" 2>/dev/null || true; hp=""
  rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  rm -rf "$work/store"
}

if [ -z "${BIN_B:-}" ]; then
  run A "$BIN" "${STORE_EXTRA:-}"
else
  for _ in $(seq "$PAIRS"); do
    run A "$BIN" "${STORE_EXTRA:-}"
    run B "$BIN_B" "${STORE_EXTRA_B:-${STORE_EXTRA:-}}"
  done
fi
