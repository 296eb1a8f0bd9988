#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus' rule checker) is installed, for tests/it/deploy.rs:
# from Debian's `prometheus` package when missing. Only the tool is wanted: the package is
# installed without its recommended extras and without starting the Prometheus server.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
apt_install prometheus
command -v promtool >/dev/null
