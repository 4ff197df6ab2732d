-- wrk script for sends: like post.lua, but every request carries a fresh number and the
-- answers are checked for success rather than compared byte for byte.
--   wrk ... -s bench/vary.lua URL -- REQUEST_FILE EXPECTED_FILE
-- The request file holds the number 4000000001 once (the Random / MsgRandom of a send): each
-- request replaces it with the next of a sequence that starts at a random point, so no two
-- requests of a run (nor, almost surely, of two runs) repeat one. A repeated Random would be
-- answered as a duplicate without sending anything. Each answer differs (MsgSeq, MsgTime,
-- MsgKey), so an answer passes when its status is 200 and it carries "ActionStatus":"OK" and
-- "ErrorCode":0; the expected file is not compared (bench/bare.py answers its bytes).
-- done() prints the same "BENCH " line as post.lua.

local threads = {}
local template
local SENTINEL = "4000000001"
local next_number
checked = 0
bad = 0
matched = {0}

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
  template = slurp(args[1])
  assert(template:find(SENTINEL, 1, true), "vary.lua: the request has no " .. SENTINEL)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  next_number = math.random(1, 2000000000)
end

function request()
  next_number = next_number + 1
  local s, e = template:find(SENTINEL, 1, true)
  local body = template:sub(1, s - 1) .. tostring(next_number) .. template:sub(e + 1)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  checked = checked + 1
  if status == 200 and body:find('"ActionStatus":"OK"', 1, true)
      and body:find('"ErrorCode":0[,}]') then
    matched[1] = matched[1] + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_checked, total_bad, total_matched = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_checked = total_checked + thread:get("checked")
    total_bad = total_bad + thread:get("bad")
    total_matched = total_matched + thread:get("matched")[1]
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"checked":%d,"bad_bodies":%d,"matched":[%d]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, total_checked, total_bad,
    total_matched))
end
