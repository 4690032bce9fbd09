-- wrk script: send the headers given in the environment and print one JSON line at the end.
-- BENCH_AUTH_HEADER="Name: value" adds one request header (the API token) to every request.
-- BENCH_AUTH_HEADERS="Name: v1\nName: v2\n..." (one per line) instead gives each request the next
-- header of the list in turn, each wrk thread starting at its own place (BENCH_LOAD_THREADS says
-- how many threads share the list): the requests in flight carry as many different tokens as the
-- list holds. A list of one header is the same code path with one token, so both hot-spot cases
-- pay the same per-request Lua call.

local function split_header(line)
  return line:match("^([^:]+):%s*(.*)$")
end

local header = os.getenv("BENCH_AUTH_HEADER")
if header and header ~= "" then
  local name, value = split_header(header)
  wrk.headers[name] = value
end

local rotation = os.getenv("BENCH_AUTH_HEADERS")
if rotation and rotation ~= "" then
  local lines = {}
  for line in rotation:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  local load_threads = tonumber(os.getenv("BENCH_LOAD_THREADS") or "1") or 1
  local next_thread = 0
  local prepared = {}
  local position = 0

  -- Runs in wrk's main Lua state once per thread, before that thread's init().
  function setup(thread)
    thread:set("thread_index", next_thread)
    next_thread = next_thread + 1
  end

  function init(args)
    for i, line in ipairs(lines) do
      local name, value = split_header(line)
      local headers = {}
      for k, v in pairs(wrk.headers) do
        headers[k] = v
      end
      headers[name] = value
      prepared[i] = wrk.format(nil, nil, headers)
    end
    position = ((thread_index or 0) * math.floor(#prepared / load_threads)) % #prepared
  end

  function request()
    position = position % #prepared + 1
    return prepared[position]
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
