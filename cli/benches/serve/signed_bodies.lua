-- wrk script for scripts/bench-serve: every request POSTs the next pre-signed Segment
-- event from $BODIES (lines of `<X-Signature>\t<body>`), each wrk thread taking every
-- $WRK_THREADS-th line so no two requests share a messageId. With $PAUSE_MS set, each
-- connection waits that long before each request, so the offered rate is about
-- connections * 1000 / PAUSE_MS per second instead of as fast as the server answers.
-- Counts the answers by kind and prints one JSON summary line (prefixed `RESULT `).

local pause = tonumber(os.getenv("PAUSE_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  bodies, signatures = {}, {}
  local line_no = 0
  for line in io.lines(os.getenv("BODIES")) do
    if line_no % stride == id then
      local tab = line:find("\t", 1, true)
      signatures[#signatures + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    line_no = line_no + 1
  end
  n, reused, ok, queued, duplicate, failed = 0, 0, 0, 0, 0, 0
end

function request()
  n = n + 1
  if n > #bodies then
    n = 1
    reused = reused + 1
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["X-Signature"] = signatures[n] }, bodies[n])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body:find('"queued"', 1, true) then
      queued = queued + 1
    elseif body:find('"duplicate"', 1, true) then
      duplicate = duplicate + 1
    end
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local totals = { ok = 0, queued = 0, duplicate = 0, failed = 0, reused = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'RESULT {"seconds":%.2f,"responses":%d,"acked":%d,"queued":%d,"duplicate":%d,"non_2xx":%d,' ..
    '"acked_per_s":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"bodies_reused":%d}\n',
    seconds, summary.requests, totals.ok, totals.queued, totals.duplicate, totals.failed,
    totals.ok / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, totals.reused))
end
