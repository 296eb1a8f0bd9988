#!/usr/bin/env bash
# The test command: ensures RabbitMQ runs and Chromium is installed (the console's browser
# test) and the tools the deploy/ files are tried with (promtool, nginx, systemd-analyze),
# then runs the whole workspace's tests against them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
scripts/ensure-chromium.sh
scripts/ensure-deploy-tools.sh
cargo test --workspace --locked "$@"
