-- drop() : forget the group (destroyed). UNLINK frees big keys off the main thread.
for _, m in ipairs(redis.call('SMEMBERS', K_MARKS)) do redis.call('UNLINK', mkey(m)) end
for _, n in ipairs(redis.call('SMEMBERS', K_NODES)) do redis.call('UNLINK', nkey(n)) end
redis.call('UNLINK', K_SEQ, K_ORD, K_ROW, K_NC, K_AM, K_X500, K_MARKS, K_NODES, K_HBI)
-- The version must never repeat a value a cached page may hold (clients trust a cached
-- page for at most 10 s): jump far ahead, and let the key go a minute later.
redis.call('INCRBY', K_VER, 1000000000)
redis.call('PEXPIRE', K_VER, 60000)
return 1
