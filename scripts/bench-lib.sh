# Sourced by scripts/bench.sh and scripts/paced.sh: what both need to run one hookgate under
# wrk with the same fixture and the same config. Not executable on its own.

SECRET="bench-secret"
BODY_BYTES=7168

# Below the kernel's ephemeral range (32768 up by default): a port there can be the local end of
# one of wrk's or lapin's connections, which no probe sees and which makes the bind fail.
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() { local p; while :; do p=$((10000 + RANDOM % (eph_low > 11000 ? eph_low - 10000 : 1000)))
  (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }; done; }
# utime+stime of a process (or a thread: PID/task/TID), clock ticks
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# github_fixture DIR: one signed 7 KB GitHub push; sets body (its path) and sig.
github_fixture() { local pad
  body="$1/body.json"
  pad=$(head -c $((BODY_BYTES - 120)) /dev/zero | tr '\0' x)
  printf '{"ref":"refs/heads/main","after":"%040d","repository":{"full_name":"octo-org/bench"},"pad":"%s"}' 0 "$pad" >"$body"
  sig="sha256=$(openssl dgst -sha256 -hmac "$SECRET" -r <"$body" | cut -d' ' -f1)"; }

# paced_load URL RATE SECS ID_PREFIX [LABEL]: examples/load.rs (built, under $TARGET) offering
# RATE req/s for SECS s, open loop, waking at most once a millisecond (per-request wake-ups
# were most of its CPU; wrk paced by bench-github.lua's delay() costs 35-50 µs per request at
# these rates, this ~23: docs/benchmarks.md, session 22). Prints its RESULT line.
paced_load() {
  "$TARGET/examples/load" --url "$1" --secret "$SECRET" --rate "$2" --count $(($2 * $3)) \
    --concurrency 512 --tick-us 1000 --body-bytes "$BODY_BYTES" --max-secs $(($3 + 30)) \
    --id-prefix "$4" --label "${5:-paced}"; }

# hg_config FILE STORE AMQP_URL QUEUE PORT ADMIN_PORT [STORE_EXTRA]: one GitHub source `gh`,
# the queue bound to everything; STORE_EXTRA are more lines for [store].
hg_config() {
cat >"$1" <<TOML
[server]
listen = "127.0.0.1:$5"
admin_listen = "127.0.0.1:$6"
trusted_proxies = ["127.0.0.1/32"]
[store]
path = "$2"
${7:-}
[amqp]
url = "$3"
exchange = "hookgate-bench"
[[amqp.queues]]
name = "$4"
bindings = ["#"]
[[sources]]
name = "gh"
provider = "github"
secrets = ["$SECRET"]
TOML
}
