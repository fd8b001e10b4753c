-- wrk script for every benchmark point.
--
-- BENCH_BODY_BYTES=n (environment) turns the request into a POST of n bytes:
-- the upload benchmark. The body is built once per wrk thread.
--
-- done() prints one line "BENCH_JSON {...}" that bench/run.py reads:
-- requests, duration, bytes, errors and latency percentiles in microseconds.

local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
if body_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
