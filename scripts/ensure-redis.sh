#!/usr/bin/env bash
# Makes sure `redis-server` and `openssl` are installed (from Debian's packages if missing);
# with `--nginx`, nginx too (scripts/cluster.sh). The tests (tests/it/replicas.rs) and
# cluster.sh start private instances on free ports: the packaged services are not started.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # the rediss test's throwaway CA
if [ "${1:-}" = "--nginx" ]; then
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "ensure-redis: installing ${need[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Keep the packages' init scripts from starting system-wide services (policy-rc.d, 101 = no).
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  policy=1
fi
trap '[ -n "$policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
