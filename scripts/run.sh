#!/usr/bin/env bash
# The run command: ensures a local RabbitMQ (installed and started if missing), builds
# hookgate and serves with the given config (default: config.example.toml).
# Without a reachable broker the gateway still runs and keeps events in its outbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh || echo "run: no local broker; hookgate will keep events in the outbox until one is reachable" >&2
config="${1:-config.example.toml}"
export GH_WEBHOOK_SECRET="${GH_WEBHOOK_SECRET:-change-me}"
cargo build --release --locked --bin hookgate
exec target/release/hookgate serve -c "$config"
