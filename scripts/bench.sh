#!/usr/bin/env bash
# Load benchmark: hookgate against a baseline run in the same script, same load generator,
# same signed GitHub deliveries (unique ids: every request takes hookgate's full path —
# verify, dedup, fsync'd outbox write — and is then published to RabbitMQ).
#
# Baseline: adnanh/webhook (Debian package `webhook`), a widely used peer, configured to
# verify the same X-Hub-Signature-256 and run /bin/true. It neither persists nor publishes,
# so the comparison favours the baseline.
#
# Bounded: COUNT requests per target (default 20000), at most MAX_SECS (default 60) each,
# loopback only. Usage: scripts/bench.sh [COUNT] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-20000}"
CONC="${2:-32}"
MAX_SECS="${MAX_SECS:-60}"
SECRET="bench-secret"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

scripts/ensure-rabbitmq.sh
if ! command -v webhook >/dev/null 2>&1; then
  echo "bench: installing the baseline (Debian package webhook = adnanh/webhook)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq webhook >/dev/null
fi
cargo build -q --release --locked --bin hookgate --example load --example consume

suffix="$(date +%s)-$$"
queue="bench-$suffix"
# Two deployment shapes: behind a reverse proxy (the load generator's address is a trusted
# proxy, so connections are kept alive) and directly on the internet (untrusted clients get
# `Connection: close`, one TCP connection per request — see src/server.rs).
write_config() {
cat > "$work/hookgate.toml" <<TOML
[server]
listen = "127.0.0.1:18080"
admin_listen = "127.0.0.1:19090"
trusted_proxies = [$1]
[store]
path = "$work/store"
[amqp]
exchange = "bench-$suffix"
[[amqp.queues]]
name = "$queue"
bindings = ["#"]
[[sources]]
name = "gh"
provider = "github"
secrets = ["$SECRET"]
TOML
}
cat > "$work/hooks.json" <<JSON
[{"id": "gh", "execute-command": "/bin/true", "response-message": "ok",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$SECRET",
    "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}}]
JSON

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
load() { target/release/examples/load --url "$1" --secret "$SECRET" --count "$COUNT" --concurrency "$CONC" --max-secs "$MAX_SECS" --label "$2" | tee -a "$work/results"; }

run_hookgate() {
  write_config "$1"; rm -rf "$work/store"
  RUST_LOG=warn target/release/hookgate serve -c "$work/hookgate.toml" & local pid=$!; pids+=($pid)
  wait_port 18080
  load http://127.0.0.1:18080/hooks/gh "$2"
  # every accepted event must reach the queue
  for _ in $(seq 1 60); do
    pending=$(curl -s http://127.0.0.1:19090/readyz | sed -n 's/.*"outbox_pending":\([0-9]*\).*/\1/p')
    [ "${pending:-1}" = "0" ] && break; sleep 0.5
  done
  published=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$queue" '$1==q {print $2}')
  echo "$2: outbox pending after run: ${pending:-?}; messages in $queue: ${published:-?}"
  rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
run_hookgate '"127.0.0.1/32"' hookgate
run_hookgate '' hookgate-direct

webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port 19000 >"$work/webhook.log" 2>&1 & pids+=($!)
wait_port 19000
load http://127.0.0.1:19000/hooks/gh webhook

echo
awk '
  /^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
              rps[v["label"]] = v["rps"]; p99[v["label"]] = v["p99_ms"]; p50[v["label"]] = v["p50_ms"];
              printf "%-16s %8s req/s   p50 %6s ms   p99 %6s ms   ok %s/%s\n", v["label"], v["rps"], v["p50_ms"], v["p99_ms"], v["ok"], v["sent"] }
  END { if (rps["webhook"] > 0) { printf "ratio hookgate/webhook (keep-alive, behind a proxy): throughput %.2fx, p99 latency %.2fx\n", rps["hookgate"] / rps["webhook"], p99["hookgate"] / p99["webhook"]; printf "ratio hookgate-direct/webhook (Connection: close):   throughput %.2fx, p99 latency %.2fx\n", rps["hookgate-direct"] / rps["webhook"], p99["hookgate-direct"] / p99["webhook"] } }
' "$work/results"
