-- count(now) -> online members: listed minus lapsed-500 members without a connection
local n = redis.call('ZCARD', K_ORD)
for _, a in ipairs(redis.call('ZRANGEBYSCORE', K_X500, '-inf', ARGV[1])) do
  if redis.call('HEXISTS', K_NC, a) == 0 then n = n - 1 end
end
return n
