-- Helpers shared by the per-group presence scripts; redis.py prepends this file to each.
--
-- KEYS[1] is the group's key base "<prefix>:{<sdkappid>:<group_id>}". Every key below is
-- derived from it, so all of a group's keys carry the same {...} hash tag and live in one
-- Redis Cluster slot (the scripts build names from the base because mark numbers and node
-- ids are data, not known in advance).
--
-- Invariant kept by every script: an account is in K_ORD (listed) iff it has at least one
-- connection (K_NC > 0) or an entry in K_X500; a lapsed 500 is filtered by readers and
-- cleaned up by expire_due. Scores, seqs and marks travel as strings so that no Lua number
-- formatting (%.14g) ever rounds them.
local B = KEYS[1]
local K_SEQ = B .. ':seq'     -- string: last join sequence handed out (INCR)
local K_ORD = B .. ':ord'     -- zset: account -> join seq (the online list)
local K_ROW = B .. ':row'     -- hash: account -> pre-encoded JSON row
local K_NC = B .. ':nc'       -- hash: account -> number of connections
local K_AM = B .. ':am'       -- hash: account -> "m1,m2" (its marks, ascending)
local K_X500 = B .. ':x500'   -- zset: account -> until (mark 500 expiry, unix s)
local K_MARKS = B .. ':marks' -- set: marks that have at least one member
local K_NODES = B .. ':nodes' -- set: node ids holding connections to the group
local K_HBI = B .. ':hbi'     -- zset: account -> when a heartbeat interruption took it offline
local K_VER = B .. ':ver'     -- string: bumped by every script that writes (page caching)

local function mkey(m) return B .. ':m:' .. m end      -- zset: account -> join seq
local function nkey(node) return B .. ':n:' .. node end -- hash: conn id -> account

local function by_number(a, b) return tonumber(a) < tonumber(b) end

local function marks_list(acc)
  local t = {}
  local s = redis.call('HGET', K_AM, acc)
  if s then
    for m in string.gmatch(s, '%d+') do t[#t + 1] = m end
  end
  return t
end

local function store_marks(acc, t)
  if #t == 0 then
    redis.call('HDEL', K_AM, acc)
  else
    table.sort(t, by_number)
    redis.call('HSET', K_AM, acc, table.concat(t, ','))
  end
end

-- Remove acc from the index of mark m (does not touch K_AM).
local function unindex(acc, m)
  local k = mkey(m)
  if redis.call('ZREM', k, acc) == 1 and redis.call('EXISTS', k) == 0 then
    redis.call('SREM', K_MARKS, m)
  end
  if m == '500' then redis.call('ZREM', K_X500, acc) end
end

local function valid500(acc, now)
  local u = redis.call('ZSCORE', K_X500, acc)
  return u and tonumber(u) > now
end

-- Take acc off the list entirely (offline).
local function purge(acc)
  for _, m in ipairs(marks_list(acc)) do unindex(acc, m) end
  redis.call('HDEL', K_AM, acc)
  redis.call('ZREM', K_X500, acc)
  redis.call('ZREM', K_ORD, acc)
  redis.call('HDEL', K_ROW, acc)
end

-- Keep only mark 500 (or only the marks other than 500 when keep500 is false).
local function keep_only_500(acc, keep500)
  local kept = {}
  for _, m in ipairs(marks_list(acc)) do
    if (m == '500') == keep500 then kept[#kept + 1] = m else unindex(acc, m) end
  end
  store_marks(acc, kept)
end

-- A connection of acc is gone: returns 1 when acc went offline.
local function conn_gone(acc, now)
  if redis.call('HINCRBY', K_NC, acc, -1) > 0 then return 0 end
  redis.call('HDEL', K_NC, acc)
  if valid500(acc, now) then
    keep_only_500(acc, true) -- stays listed; marks other than 500 are cleared
    return 0
  end
  purge(acc)
  return 1
end

-- A heartbeat interruption took acc offline at now_s: remember it, for any process, so
-- that its next join within the window is a recovery.
local function remember_interruption(acc, now_s)
  redis.call('ZADD', K_HBI, now_s, acc)
end

-- Forget interruptions before since_s (now - window). Run by every script that records
-- one, so the zset holds about one window's worth and needs no sweeper.
local function trim_interruptions(since_s)
  redis.call('ZREMRANGEBYSCORE', K_HBI, '-inf', '(' .. since_s)
end

-- acc is becoming online: forget its interruption; true if that was at or after since_s.
local function recovering(acc, since_s)
  local at = redis.call('ZSCORE', K_HBI, acc)
  if not at then return false end
  redis.call('ZREM', K_HBI, acc)
  return tonumber(at) >= tonumber(since_s)
end

-- Apply every lapsed mark 500; returns the accounts that went offline because of it.
local function expire_due(now_s)
  local off = {}
  for _, a in ipairs(redis.call('ZRANGEBYSCORE', K_X500, '-inf', now_s)) do
    if redis.call('HEXISTS', K_NC, a) == 1 then
      keep_only_500(a, false)
    else
      purge(a)
      off[#off + 1] = a
    end
  end
  return off
end
