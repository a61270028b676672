-- P3's wrk script: every request the same, from the environment (bench/serving/bench.py sets it):
--   WRK_METHOD  POST (default) or GET
--   WRK_BODY    a file whose bytes are every request's body (POST)
--   WRK_AUTH    the Authorization header's value, sent to every server (only Petri reads it)
-- At the end it prints one line, `WRK_JSON {...}`: requests, seconds, errors by kind, and the
-- latency percentiles wrk measured (closed loop: not the fixed-rate latencies).
wrk.method = os.getenv("WRK_METHOD") or "POST"
local path = os.getenv("WRK_BODY")
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
