#!/usr/bin/env bash
# Makes sure Debian's `chromium` and `chromium-driver` are installed, for the console's browser
# test (tests/it/console.rs). Installs them with apt-get if missing (one `apt-get update`
# first); nothing else is downloaded. The test fails loudly when they are missing, it never
# skips: run this before `cargo test` (scripts/test.sh does).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-chromium: installing chromium and chromium-driver (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "ensure-chromium: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | head -1)"
