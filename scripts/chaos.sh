#!/usr/bin/env bash
# Chaos scenarios of issue #7 against the real RabbitMQ: proves that a 2xx from hookgate is
# never lost. Builds the release gateway and the driver (examples/chaos), then runs:
#
#   outage   the broker cut for --outage-secs (default 30) while clients keep posting
#   crash    kill -9 under load at several points (--kill-after-ms), and mid-publish
#   restart  dedup across SIGTERM / kill -9 restarts and window expiry; the outbox resumes
#   refuse   queue at max-length with reject-publish (nacks), slow consumer, deleted exchange
#   disk     the store's file system fills up, then space returns (needs root: a tmpfs)
#   disk-up  the same with the broker up: sled and the dedup table fail until a restart, so
#            the gateway must exit 1 (and, restarted, lose nothing)
#
# Each prints a table: events sent, 2xx, delivered, duplicates, lost (must be 0). Exit status
# is non-zero on any loss, reordering or failed check. Loopback only; the broker is cut with a
# TCP proxy in the driver, never stopped, so other users of it are not disturbed.
#
#   scripts/chaos.sh                                # everything (about 4 minutes)
#   scripts/chaos.sh --scenarios outage --outage-secs 30
#   scripts/chaos.sh --help                         # every option
#
# Whole run bounded by CHAOS_MAX_SECS (default 1800). Stores, configs and gateway logs go to
# target/chaos/<time>/ (stores are removed when every scenario passed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
cargo build --release --locked --bin hookgate --example chaos
exec timeout "${CHAOS_MAX_SECS:-1800}" target/release/examples/chaos \
  --hookgate target/release/hookgate "$@"
