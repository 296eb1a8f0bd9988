#!/usr/bin/env bash
# Replicas behind a load balancer (issue 13): three release `hookgate` replicas with stores of
# their own, Debian nginx in front, a private redis-server for the shared dedup, the real
# RabbitMQ. One run (examples/cluster.rs) measures throughput through nginx to one replica vs
# three, the latency the shared claim adds (p50/p99, shared on vs off), then drives
# provider-like mixed load (GitHub, Standard Webhooks, encrypted Feishu; each delivery retried
# with backoff until a 2xx) while one replica and then Redis are killed -9 and restarted, and
# prints accepted / published / duplicates / lost. Exit status is non-zero if anything
# acknowledged was lost.
#
#   scripts/cluster.sh                       # about 1.5 minutes with the defaults
#   scripts/cluster.sh --phase-secs 15 --concurrency 64
#   scripts/cluster.sh --help
#
# Bounded by CLUSTER_MAX_SECS (default 300). Loopback only; the shared RabbitMQ is used (its own
# exchange and queue, deleted at the end) and never stopped; Redis and nginx are private
# instances on free ports. Configs, stores and logs go to target/cluster/<time>/ (removed
# when nothing was lost).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
scripts/ensure-redis.sh --nginx
cargo build --release --locked --bin hookgate --example cluster
exec timeout "${CLUSTER_MAX_SECS:-300}" target/release/examples/cluster \
  --hookgate target/release/hookgate --nginx "$(command -v nginx || echo /usr/sbin/nginx)" "$@"
