-- wrk script: POST fixed JSON bodies and count answers that differ from the expected bytes.
-- OpenTIM answers every error with HTTP 200 and an envelope, so the status alone would not
-- catch a failing run (say, a rate limit answering 60007): each body is compared in full.
--   wrk ... -s bench/post.lua URL -- REQUEST_FILE EXPECTED_FILE [REQUEST_FILE EXPECTED_FILE]...
-- With several pairs, requests cycle through them (e.g. set, then delete) and an answer
-- passes when it equals any expected body; "matched" counts answers per pair, so a run in
-- which one kind never came back is caught too.
-- done() prints one machine-readable line starting with "BENCH " for bench/probes.py.

local threads = {}
local bodies, expected = {}, {}
local sent = 0
checked = 0
bad = 0
matched = {}

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
  wrk.headers["Content-Type"] = "application/json"
  for i = 1, #args, 2 do
    table.insert(bodies, slurp(args[i]))
    table.insert(expected, slurp(args[i + 1]))
    table.insert(matched, 0)
  end
  wrk.body = bodies[1]
end

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[(sent - 1) % #bodies + 1])
end

function response(status, headers, body)
  checked = checked + 1
  local hit = nil
  if status == 200 then
    for i = 1, #expected do
      if body == expected[i] then
        hit = i
        break
      end
    end
  end
  if hit then
    matched[hit] = matched[hit] + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_checked, total_bad, total_matched = 0, 0, {}
  for _, thread in ipairs(threads) do
    total_checked = total_checked + thread:get("checked")
    total_bad = total_bad + thread:get("bad")
    for i, n in ipairs(thread:get("matched")) do
      total_matched[i] = (total_matched[i] or 0) + n
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"checked":%d,"bad_bodies":%d,"matched":[%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, total_checked, total_bad,
    table.concat(total_matched, ",")))
end
