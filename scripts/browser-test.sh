#!/usr/bin/env bash
# The console's browser test alone: makes sure RabbitMQ and headless Chromium are there, then
# drives the console of a real gateway (tests/it/console.rs) and refreshes docs/console.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
scripts/ensure-chromium.sh
HOOKGATE_CONSOLE_SCREENSHOT="$PWD/docs/console.png" cargo test --locked --test it console:: "$@"
