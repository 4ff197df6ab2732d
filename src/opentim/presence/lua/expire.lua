-- expire(now) -> {next_until or '', accounts that went offline...}
-- Sweeper entry point; next_until lets the caller reschedule the group.
local out = { '' }
for _, a in ipairs(expire_due(ARGV[1])) do out[#out + 1] = a end
local nxt = redis.call('ZRANGE', K_X500, 0, 0, 'WITHSCORES')
if #nxt > 0 then out[1] = nxt[2] end
return out
