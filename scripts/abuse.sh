#!/usr/bin/env bash
# Abuse run: starts a release gateway with a throwaway store, its own exchange and a queue it
# declares itself, then examples/abuse.rs throws oversize (declared and chunked), malformed,
# garbage, unsigned, wrong-IP, spoofed X-Forwarded-For, a one-client flood and slowloris
# connections at it while valid signed GitHub deliveries flow, replays valid ids, and counts
# what reached the queue. Prints the table, the gateway's resident memory before and its peak
# (VmHWM) after, and exits non-zero if any valid event was not accepted and published exactly
# once, or if anything else was accepted or published.
#
# Bounded: VALID valid deliveries (default 3000), BAD per abuse kind (default 1000), FLOOD at
# most (default 30000), SLOW slowloris connections (default 50), MAX_SECS for the traffic
# (default 90); loopback only. Usage: scripts/abuse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VALID="${VALID:-3000}"
BAD="${BAD:-1000}"
FLOOD="${FLOOD:-30000}"
SLOW="${SLOW:-50}"
MAX_SECS="${MAX_SECS:-90}"
SECRET="abuse-secret-$RANDOM$RANDOM"
work="$(mktemp -d)"
gw_pid=""
cleanup() { [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

scripts/ensure-rabbitmq.sh
cargo build -q --release --locked --bin hookgate --example abuse

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"; admin="$(free_port)"
suffix="$(date +%s)-$$"
cat > "$work/hookgate.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
# The abuse client stands in for a proxy: its X-Forwarded-For tells the clients apart.
trusted_proxies = ["127.0.0.1/32"]
request_timeout_secs = 2
client_rate_limit = { per_second = 50, burst = 100 }
workers = 2
[store]
path = "$work/store"
[amqp]
exchange = "abuse-$suffix"
[[amqp.queues]]
name = "abuse-$suffix"
kind = "classic"
bindings = ["#"]
[[sources]]
name = "shop"
provider = "github"
secrets = ["$SECRET"]
allow_ips = ["198.51.100.0/24", "2001:db8::/32"]
max_body_bytes = 65536
TOML

target/release/hookgate serve -c "$work/hookgate.toml" >"$work/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$admin/readyz" 2>/dev/null | grep -q '"connected":true' && break
  sleep 0.1
done
rss_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$gw_pid/status"; }
rss_start="$(rss_kb VmRSS)"

status=0
timeout $((MAX_SECS + 60)) target/release/examples/abuse \
  --addr "127.0.0.1:$port" --admin "127.0.0.1:$admin" --source shop --secret "$SECRET" \
  --max-body 65536 --queue "abuse-$suffix" --exchange "abuse-$suffix" \
  --valid "$VALID" --bad "$BAD" --flood "$FLOOD" --slow "$SLOW" --max-secs "$MAX_SECS" || status=$?

if ! kill -0 "$gw_pid" 2>/dev/null; then
  echo "abuse: the gateway died; its log:" >&2; tail -20 "$work/gateway.log" >&2; exit 1
fi
rss_now="$(rss_kb VmRSS)"; rss_peak="$(rss_kb VmHWM)"
echo "gateway memory: RSS at start ${rss_start} kB, after the run ${rss_now} kB, peak (VmHWM) ${rss_peak} kB"
kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=""
exit "$status"
