-- wrk script for bench/run.py. wrk connects to the address on its command line (the proxy, or
-- nginx for the baseline); this script decides what is sent on that connection:
--   BENCH_PATH   request target: an absolute-form URL "http://127.0.0.1:ORIGIN/small" when wrk
--                talks to a proxy, "/small" for the baseline
--   BENCH_HOST   Host header (the origin's host:port, not the proxy's)
--   BENCH_CLOSE  "1" adds "Connection: close": every response ends its connection and wrk opens
--                a new one for the next request (the new-connection metric)
-- The request is formatted once (wrk.init's default), so no Lua runs per request.
-- done() prints one machine-readable line that bench/run.py parses instead of wrk's text.

local path = os.getenv("BENCH_PATH")
if path and path ~= "" then
  wrk.path = path
end
local host = os.getenv("BENCH_HOST")
if host and host ~= "" then
  wrk.headers["Host"] = host
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d," ..
    "\"lat_p50_us\":%d,\"lat_p99_us\":%d,\"lat_max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
