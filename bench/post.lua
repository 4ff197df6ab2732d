-- wrk script: POST a fixed JSON body and count answers that differ from the expected bytes.
-- OpenTIM answers every error with HTTP 200 and an envelope, so the status alone would not
-- catch a failing run (say, a rate limit answering 60007): each body is compared in full.
--   wrk ... -s bench/post.lua URL -- REQUEST_BODY_FILE EXPECTED_RESPONSE_FILE
-- done() prints one machine-readable line starting with "BENCH " for bench/suite.py.

local threads = {}
local expected = nil
checked = 0
bad = 0

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.body = slurp(args[1])
  wrk.headers["Content-Type"] = "application/json"
  expected = slurp(args[2])
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 or body ~= expected then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_checked, total_bad = 0, 0
  for _, thread in ipairs(threads) do
    total_checked = total_checked + thread:get("checked")
    total_bad = total_bad + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"checked":%d,"bad_bodies":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, total_checked, total_bad))
end
