"""The Lua scripts of the Redis store (:mod:`.redis`): each write, delete, schedule read and
claim is one script, so it is atomic across every worker sharing the server."""

__all__ = ["CLAIM", "DELETE", "DUE", "MARK_USED", "RELEASE", "WRITE"]

# A login (ARGV[6] empty) or a refresh over version ARGV[6]: a new version, its due time and
# use, and the news published. With ARGV[7], a login moved in at that version, over no newer.
WRITE = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[6] ~= '' and (not v or tonumber(v) ~= tonumber(ARGV[6])) then return 0 end
local n
if ARGV[7] then
  n = tonumber(ARGV[7])
  if v and tonumber(v) >= n then return 0 end
  if tonumber(redis.call('GET', KEYS[3]) or '0') < n then redis.call('SET', KEYS[3], n) end
else n = redis.call('INCR', KEYS[3]) end
redis.call('HSET', KEYS[1], 'v', n, 'd', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
else redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
redis.call('PUBLISH', KEYS[5], '\0' .. n .. ':' .. #ARGV[4] .. ':' .. ARGV[4] .. ARGV[1])
return n
"""

DELETE = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] ~= '' and (not v or tonumber(v) ~= tonumber(ARGV[1])) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[2])
return redis.call('DEL', KEYS[1])
"""

MARK_USED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'LT', ARGV[1], ARGV[2])
end
"""

# Due keys with when each was last used, each put off until ARGV[4] (DUE_LEASE), and the
# earliest due time; usage stamps of keys that expired unused go with them.
DUE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, k in ipairs(keys) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], k) or ''
  redis.call('ZADD', KEYS[1], 'XX', ARGV[4], k)
end
return {out, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')}
"""

# Take the claim if free, or if held by the same owner (ARGV[3], a prefix of its claims).
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, string.len(ARGV[3])) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
