#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (guest/guest): installs it from
# Debian's packages if missing, starts it if stopped, waits until it accepts connections.
# Skipped when AMQP_URL points somewhere else than the local default.
set -euo pipefail

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if [ -n "${AMQP_URL:-}" ] && [[ "$AMQP_URL" != *"127.0.0.1:5672"* && "$AMQP_URL" != *"localhost:5672"* ]]; then
  echo "ensure-rabbitmq: AMQP_URL points elsewhere; not managing a local broker"
  exit 0
fi
if port_open; then
  exit 0
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "ensure-rabbitmq: installing rabbitmq-server (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
fi
echo "ensure-rabbitmq: starting rabbitmq-server"
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 120); do
  if port_open; then
    # The port opens slightly before the broker takes AMQP sessions.
    rabbitmqctl await_startup >/dev/null 2>&1 || sleep 2
    echo "ensure-rabbitmq: broker is up"
    exit 0
  fi
  sleep 1
done
echo "ensure-rabbitmq: RabbitMQ did not come up on 127.0.0.1:5672 within 120 s" >&2
exit 1
