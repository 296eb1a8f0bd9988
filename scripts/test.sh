#!/usr/bin/env bash
# The test command: ensures RabbitMQ runs, then runs the whole workspace's tests against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
cargo test --workspace --locked "$@"
