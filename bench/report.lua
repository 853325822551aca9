-- report.lua - wrk script for bench/run: one machine-readable summary line.
--
-- done() prints "BENCH key=value ..." with the request count, the rate, the
-- latency percentiles in microseconds (p99.9 included, which wrk's --latency
-- table lacks) and every error counter (status = non-2xx/3xx answers).
-- With BENCH_STOP_AFTER=N in the environment each thread stops after N
-- answers, so a run can be sized by requests rather than by time.

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "0") or 0

if stop_after > 0 then
    local seen = 0
    function response(status, headers, body)
        seen = seen + 1
        if seen >= stop_after then
            wrk.thread:stop()
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
        "BENCH requests=%d duration_us=%d rps=%.1f mean=%.1f p50=%d p75=%d p90=%d " ..
        "p99=%d p999=%d max=%d err_connect=%d err_read=%d err_write=%d " ..
        "err_status=%d err_timeout=%d bytes=%d\n",
        summary.requests, summary.duration, summary.requests / secs, latency.mean,
        latency:percentile(50), latency:percentile(75), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max,
        e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
