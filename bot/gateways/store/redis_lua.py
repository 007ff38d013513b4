"""The Lua scripts behind `RedisStore`: every read-modify-write it does is one of these (or one
plain Redis command), so several bot replicas never interleave a "read, decide, write"."""

from __future__ import annotations

from typing import Final

# Shared by both scripts. Mirrors `checks.matches`: typed equality, null matches absent. The stored
# JSON is only decoded to read one field, never re-encoded (cjson would mangle big integers,
# empty arrays and escapes), and the reply carries the raw text.
_LUA_MATCHES: Final = """
local function matches(raw, field, kind, expected)
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then return false end
  local v = rec[field]
  if kind == 'null' then return v == nil or v == cjson.null end
  if kind == 'bool' then return type(v) == 'boolean' and v == (expected == '1') end
  if kind == 'int' then return type(v) == 'number' and v == tonumber(expected) end
  return type(v) == 'string' and v == expected
end
"""

# KEYS[1] record; ARGV: field, kind, expected, new JSON, ttl mode (none|keep|px), ttl ms.
# Reply: {1} won, {0} absent, {0, current JSON} lost.
LUA_CAS: Final = (
    _LUA_MATCHES
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
if not matches(raw, ARGV[1], ARGV[2], ARGV[3]) then return {0, raw} end
if ARGV[5] == 'px' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[6])
elseif ARGV[5] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return {1}
"""
)

# KEYS[1] record; ARGV: field, kind, expected. Reply: 1 deleted, 0 not.
LUA_DELETE_IF: Final = (
    _LUA_MATCHES
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if not matches(raw, ARGV[1], ARGV[2], ARGV[3]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
)

# KEYS[1] audit stream, KEYS[2] chain metadata hash; ARGV: expected tip hash, expected tip seq,
# GENESIS, then for each entry its number of fields and its field/value pairs (already linked,
# in order, to that tip and hashed). Reply: {1, id, id, …} appended; {0, tip hash, tip seq} the
# tip moved: link to it and try again.
LUA_APPEND: Final = """
local tip = redis.call('HGET', KEYS[2], 'tip_hash') or ARGV[3]
local tip_seq = redis.call('HGET', KEYS[2], 'tip_seq') or '0'
if tip ~= ARGV[1] or tip_seq ~= ARGV[2] then return {0, tip, tip_seq} end
local reply, i, hash, seq, id = {1}, 4, nil, nil, nil
while i <= #ARGV do
  local n, fields = tonumber(ARGV[i]), {}
  for j = i + 1, i + 2 * n, 2 do
    fields[#fields + 1] = ARGV[j]
    fields[#fields + 1] = ARGV[j + 1]
    if ARGV[j] == 'hash' then hash = ARGV[j + 1] elseif ARGV[j] == 'seq' then seq = ARGV[j + 1] end
  end
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
  reply[#reply + 1] = id
  i = i + 1 + 2 * n
end
redis.call('HSET', KEYS[2], 'tip_hash', hash, 'tip_seq', seq, 'tip_id', id)
return reply
"""

_LUA_ID_LESS: Final = """
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
"""

# KEYS[1] stream, KEYS[2] metadata; ARGV: first id exported, last id exported. Reply 1 if the
# watermark moved: only when no entry between the old watermark and the first id is unexported.
LUA_MARK_EXPORTED: Final = (
    _LUA_ID_LESS
    + """
local done = redis.call('HGET', KEYS[2], 'exported_id')
local from = done and ('(' .. done) or '-'
if done and not id_less(done, ARGV[1]) then
  from = nil
end
if from and #redis.call('XRANGE', KEYS[1], from, '(' .. ARGV[1], 'COUNT', 1) > 0 then return 0 end
if done and not id_less(done, ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'exported_id', ARGV[2])
return 1
"""
)

# KEYS[1] stream, KEYS[2] metadata; ARGV: limit id. Drops entries before it, anchoring the chain
# at the last one dropped (its seq and hash), in one step so `verify` never sees half of it.
LUA_TRIM: Final = """
local last = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
if #last == 0 then return 0 end
local f, hash, seq = last[1][2], nil, nil
for i = 1, #f, 2 do
  if f[i] == 'hash' then hash = f[i + 1] elseif f[i] == 'seq' then seq = f[i + 1] end
end
if hash and seq then
  redis.call('HSET', KEYS[2], 'anchor_hash', hash, 'anchor_seq', seq, 'anchor_id', last[1][1])
else
  redis.call('HSET', KEYS[2], 'anchor_id', last[1][1])
end
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
"""
