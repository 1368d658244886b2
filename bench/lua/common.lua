-- Shared by the wrk scripts of crud_bench.py. A phase script calls serve(build), where build()
-- returns the phase's raw HTTP requests (made with wrk.format); they are prebuilt once per thread
-- and sent round-robin, each thread starting at its own offset. Every response whose status is not
-- 2xx is counted, and done() prints one "BENCH_RESULT {json}" line for the harness to parse.
-- Every request carries "Authorization: Bearer $BENCH_TOKEN" (bench/bench_auth.py mints it).
local common = {}

local threads = {}

function common.read_file(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

function common.lines(path)
  local result = {}
  for line in io.lines(path) do
    if line ~= "" then
      result[#result + 1] = line
    end
  end
  return result
end

function common.headers(extra)
  local token = assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")
  local headers = { ["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer " .. token }
  for name, value in pairs(extra or {}) do
    headers[name] = value
  end
  return headers
end

function common.serve(build)
  local requests, count, position

  function setup(thread)
    threads[#threads + 1] = thread
    thread:set("thread_index", #threads)
  end

  function init(args)
    local thread_total = tonumber(args[1]) or 1
    requests = build()
    count = #requests
    assert(count > 0, "no requests to send")
    position = math.floor((thread_index - 1) * count / thread_total)
    non_2xx = 0
  end

  function request()
    position = position % count + 1
    return requests[position]
  end

  function response(status, headers, body)
    if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
    end
  end

  function done(summary, latency, requests_stats)
    local non_2xx_total = 0
    for _, thread in ipairs(threads) do
      non_2xx_total = non_2xx_total + (thread:get("non_2xx") or 0)
    end
    local errors = summary.errors
    io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,'
        .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
        .. '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, non_2xx_total,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
      latency.max, latency.mean))
  end
end

return common
