#!/usr/bin/env bash
# The tools tests/it/deploy.rs runs the files of deploy/ with: promtool (alert rules),
# nginx and openssl (the TLS front door), systemd-analyze (the unit). Installs the missing
# ones from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")"
. ./apt-install.sh
./ensure-promtool.sh
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
