-- drop() : forget the group (destroyed). UNLINK frees big keys off the main thread.
for _, m in ipairs(redis.call('SMEMBERS', K_MARKS)) do redis.call('UNLINK', mkey(m)) end
for _, n in ipairs(redis.call('SMEMBERS', K_NODES)) do redis.call('UNLINK', nkey(n)) end
redis.call('UNLINK', K_SEQ, K_ORD, K_ROW, K_NC, K_AM, K_X500, K_MARKS, K_NODES)
return 1
