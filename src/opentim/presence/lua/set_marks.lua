-- set_marks(now, until, allow_offline_500, max_distinct, max_per_mark, min_custom,
--           {account, row, k, mark1..markk}...)
-- -> {'LIMIT', kind, limit, mark, off...} with no mark applied, or
--    {'OK', n_off, off..., n, {account, became_online, "marks"}...}
-- off: members whose lapsed 500 was removed first (also on LIMIT: Lua can't undo that,
-- and nobody else will report them). row is the JSON row to list an offline account
-- with (only sent when 500 is asked for).
local NOW_S, UNTIL = ARGV[1], ARGV[2]
local allow500 = ARGV[3] == '1'
-- the limits are the caller's (opentim.domain.marks.MARK_LIMITS), never defined here
local max_distinct, max_per = tonumber(ARGV[4]), tonumber(ARGV[5])
local min_custom = tonumber(ARGV[6])
local offline = expire_due(NOW_S) -- afterwards: listed == online

-- 1. plan: who gets which marks, and how many new members each mark would get
local plan, adds = {}, {}
local i = 7
while i <= #ARGV do
  local acc, row, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local ms, want500 = {}, false
  for j = 1, k do
    ms[j] = ARGV[i + 2 + j]
    if ms[j] == '500' then want500 = true end
  end
  i = i + 3 + k
  local seq = redis.call('ZSCORE', K_ORD, acc)
  if seq or (allow500 and want500) then
    local have = seq and marks_list(acc) or {}
    local held = {}
    for _, m in ipairs(have) do held[m] = true end
    for _, m in ipairs(ms) do
      if not held[m] then adds[m] = (adds[m] or 0) + 1 end
    end
    plan[#plan + 1] = { acc, row, ms, seq, have, held }
  end
end

-- 2. limits, before applying any mark
local distinct, in_use = 0, {}
for _, m in ipairs(redis.call('SMEMBERS', K_MARKS)) do
  in_use[m] = true
  if tonumber(m) >= min_custom then distinct = distinct + 1 end
end
local added = {}
for m, _ in pairs(adds) do
  added[#added + 1] = m
  if tonumber(m) >= min_custom and not in_use[m] then distinct = distinct + 1 end
end
local function limit(kind, lim, m)
  local out = { 'LIMIT', kind, lim, m }
  for _, a in ipairs(offline) do out[#out + 1] = a end
  return out
end
if distinct > max_distinct then return limit('distinct_marks', max_distinct, 0) end
table.sort(added, by_number)
for _, m in ipairs(added) do
  if redis.call('ZCARD', mkey(m)) + adds[m] > max_per then
    return limit('members_per_mark', max_per, tonumber(m))
  end
end

-- 3. apply
local out = { 'OK', #offline }
for _, a in ipairs(offline) do out[#out + 1] = a end
out[#out + 1] = #plan
for _, p in ipairs(plan) do
  local acc, row, ms, seq, have, held = p[1], p[2], p[3], p[4], p[5], p[6]
  local new = 0
  if not seq then
    seq = redis.call('INCR', K_SEQ)
    redis.call('ZADD', K_ORD, seq, acc)
    redis.call('HSET', K_ROW, acc, row)
    redis.call('ZREM', K_HBI, acc) -- online again: a later join is no recovery
    new = 1
  end
  for _, m in ipairs(ms) do
    if not held[m] then
      redis.call('ZADD', mkey(m), seq, acc)
      redis.call('SADD', K_MARKS, m)
      have[#have + 1] = m
      held[m] = true
    end
    if m == '500' then redis.call('ZADD', K_X500, UNTIL, acc) end
  end
  store_marks(acc, have)
  out[#out + 1] = acc
  out[#out + 1] = new
  out[#out + 1] = table.concat(have, ',')
end
return out
