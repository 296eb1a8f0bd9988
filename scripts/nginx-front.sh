#!/usr/bin/env bash
# nginx (Debian's) with deploy/nginx/hookgate.conf and a throwaway self-signed certificate on
# a free port, in front of a real hookgate and the local RabbitMQ: a signed GitHub delivery
# over HTTPS arrives on the broker, the refusal ring records the address nginx saw (not the
# client's own X-Forwarded-For), a body one byte over the limit is refused.
# The test itself is tests/it/deploy.rs (nginx_front_door_*), also run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
scripts/ensure-deploy-tools.sh
exec cargo test -p hookgate --test it --locked deploy::nginx_front_door -- --nocapture
