-- wrk script: POST /v1/sign-in with bearer tokens read from a file, one per line.
--
--   wrk -t2 -c64 -d10s -s bench/sign_in.lua URL -- TOKENS_FILE THREADS
--
-- Each thread sends its own share of the tokens in order, a new one on every
-- request, and starts over when it runs out; `done` reports how often that
-- happened, so a figure that needed every token to be new can be discarded.
-- The result is printed as one JSON line starting with "bench-result ".

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  requests_prepared = {}
  next_request = 0
  restarts = 0

  local line_number = 0
  for token in io.lines(path) do
    if line_number % thread_count == thread_number then
      local headers = { ["Authorization"] = "Bearer " .. token }
      table.insert(requests_prepared, wrk.format("POST", "/v1/sign-in", headers))
    end
    line_number = line_number + 1
  end

  if #requests_prepared == 0 then
    error("no tokens for thread " .. thread_number .. " in " .. path)
  end
end

function request()
  next_request = next_request + 1
  if next_request > #requests_prepared then
    next_request = 1
    restarts = restarts + 1
  end
  return requests_prepared[next_request]
end

function done(summary, latency, requests)
  local restarted = 0
  for _, thread in ipairs(threads) do
    restarted = restarted + thread:get("restarts")
  end

  local errors = summary.errors
  io.write(string.format(
    "bench-result {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"non_2xx\": %d, \"connect_errors\": %d, \"read_errors\": %d, " ..
    "\"write_errors\": %d, \"timeouts\": %d, \"token_restarts\": %d, " ..
    "\"latency_us\": {\"p50\": %d, \"p95\": %d, \"p99\": %d, " ..
    "\"mean\": %.1f, \"max\": %d}}\n",
    summary.requests, summary.duration, summary.bytes,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout,
    restarted,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end
