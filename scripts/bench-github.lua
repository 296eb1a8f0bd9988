-- wrk script of scripts/bench.sh: POSTs one signed 7 KB GitHub push with a unique
-- X-GitHub-Delivery per request (prefix from BENCH_ID, per thread, per request), counts the
-- replies under 400, and stops a thread after BENCH_MAX_PER_THREAD requests (a safety cap;
-- bench.sh sizes it so that the duration, not the cap, ends the run, and says so when it did
-- not). The body is the same for every request, so its signature is computed once (by
-- bench.sh); the server still verifies every request's HMAC over the whole body.
-- The generator shares the two cores with what it measures, so it does as little as it can
-- per request: no response() callback (with one, wrk hands every reply's headers and body to
-- Lua; its own counter of replies of 400 and up is enough) and one concatenation of a request
-- formatted once per thread (wrk.format per request built a table and the 7 KB string anew).
-- Against the bare server that took wrk from 17–20 to 14–15 µs of CPU per request
-- (docs/benchmarks.md, session 21).
local body = assert(io.open(os.getenv("BENCH_BODY"), "rb")):read("*a")
local sig = os.getenv("BENCH_SIG")
local run = os.getenv("BENCH_ID") or "wrk"
local cap = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "0")
-- BENCH_RATE_PER_THREAD (optional): each thread paces its requests to this many a second
-- (a schedule kept across its connections; behind it, they send as fast as they can until
-- caught up): the sustained rows offer a fixed rate instead of flat out.
local per_thread = tonumber(os.getenv("BENCH_RATE_PER_THREAD") or "0")
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local head, tail

function init(args)
  n = 0
  capped = 0
  -- The whole request once, split around its delivery id: each request is head .. n .. tail.
  local mark = "\1id\1"
  local whole = wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = mark,
    ["X-Hub-Signature-256"] = sig,
  }, body)
  local at = assert(whole:find(mark, 1, true))
  head = whole:sub(1, at - 1) .. string.format("%s-t%d-", run, tid)
  tail = whole:sub(at + #mark)
end

if per_thread > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *ts);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
  end
  local next_at

  -- wrk calls delay() before each request and waits that many (whole) milliseconds.
  function delay()
    local t = now()
    next_at = next_at or t
    local wait = next_at - t
    next_at = next_at + 1 / per_thread
    return wait > 0 and math.floor(wait * 1000) or 0
  end
end

function request()
  n = n + 1
  if cap > 0 and n >= cap then
    capped = 1
    wrk.thread:stop()
  end
  return head .. n .. tail
end

function done(summary, latency, requests)
  local any_capped = 0
  for _, t in ipairs(threads) do
    any_capped = any_capped + t:get("capped")
  end
  -- wrk counts a reply of 400 or more in errors.status; hookgate answers 200, 202 or a 4xx/5xx.
  local total_ok = summary.requests - summary.errors.status
  io.write(string.format(
    "WRK requests=%d ok=%d secs=%.3f rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d capped=%d\n",
    summary.requests, total_ok, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
      + summary.errors.status,
    any_capped))
end
