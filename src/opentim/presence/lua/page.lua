-- page(below, take, mark, now, known_ver) -> {'same'} or
--   {last_seq, n, more, ver, first_500_expiry or '', chunk...}
-- below: '+inf' or '(<seq>'; mark: '' for the plain list. Each chunk is a run of up to
-- 32 JSON rows joined by ','; the client only has to join the chunks with ','.
-- K_VER changes with every write to the group, so a client holding this page from
-- version known_ver gets the one-word answer 'same' instead of the rows again; the page
-- can also change when a mark 500 lapses, hence the first expiry in the reply.
local below, take, mark, NOW = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local VER = redis.call('GET', K_VER) or '0'
local first = redis.call('ZRANGE', K_X500, 0, 0, 'WITHSCORES')
local first500 = ''
if #first > 0 then first500 = first[2] end
if ARGV[5] == VER and (first500 == '' or tonumber(first500) > NOW) then return { 'same' } end
local src = K_ORD
if mark ~= '' then src = mkey(mark) end
local k600 = mkey('600')
local hide600 = mark == '' and redis.call('EXISTS', k600) == 1
local any500 = redis.call('EXISTS', K_X500) == 1
local want500 = mark == '500'
local accs, more = {}, 0
local max = below
while true do
  -- Skipped members (hidden 600, lapsed 500) are bounded by the 1000-per-mark limit,
  -- so this loop runs a bounded number of times. No WITHSCORES: formatting 500 scores
  -- costs more than the two ZSCOREs below.
  local got = redis.call('ZREVRANGEBYSCORE', src, max, '-inf', 'LIMIT', 0, take + 1)
  local n = #got
  for i = 1, n do
    local a = got[i]
    local ok = true
    if hide600 and redis.call('ZSCORE', k600, a) then
      ok = false
    elseif any500 then
      local u = redis.call('ZSCORE', K_X500, a)
      if want500 then
        ok = u and tonumber(u) > NOW
      elseif u and tonumber(u) <= NOW then
        ok = redis.call('HEXISTS', K_NC, a) == 1
      end
    elseif want500 then
      ok = false
    end
    if ok then
      if #accs == take then
        more = 1
        break
      end
      accs[#accs + 1] = a
    end
  end
  if more == 1 or n < take + 1 then break end
  max = '(' .. redis.call('ZSCORE', src, got[n])
end
if #accs == 0 then return { 0, 0, 0, VER, first500 } end
local last = redis.call('ZSCORE', src, accs[#accs])
-- Rows are joined here, in chunks of CHUNK rows: one table.concat over all 500 rows
-- (~64 KB) costs Redis 2-3x more than 16 concats that each fit Lua's 8 KB buffer
-- (measured). The client joins the <= 16 chunks; it never sees individual rows.
local CHUNK = 32
local out = { tonumber(last), #accs, more, VER, first500 }
for i = 1, #accs, CHUNK do
  local j = math.min(i + CHUNK - 1, #accs)
  local rows = redis.call('HMGET', K_ROW, unpack(accs, i, j))
  out[#out + 1] = table.concat(rows, ',')
end
return out
