# Sourced by the ensure-*.sh scripts: `apt_install PKG...` installs Debian packages without
# recommends and without starting their services (a test machine wants the binaries, not a
# Prometheus or an nginx on ports 9090 and 80): a policy-rc.d that denies every start is in
# place for the install when none exists already.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local sudo="" policy=/usr/sbin/policy-rc.d made=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    made=1
  fi
  echo "apt-install: $*"
  local rc=0
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } || rc=$?
  [ -n "$made" ] && $sudo rm -f "$policy"
  return $rc
}
