"""Lua scripts that make the ledger's state transitions atomic in Redis.

Every per-run script takes the same KEYS, in this order (see ``Ledger._keys``):
run hash, task states, attempts, started, ended, outputs, errors.
"""

# Shared Lua helpers: refresh the TTL of every key touched; decide the run's end state.
_COMMON = """
local function touch_ttl(ttl)
  for i = 1, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
local function terminal(s)
  return s == 'Success' or s == 'Failed' or s == 'TriggerFailed'
end
local function finalize(now, ref_prefix)
  local state = 'Success'
  if redis.call('HGET', KEYS[1], 'cancelled') == '1' then
    state = 'Cancelled'
  else
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, #ref_prefix) == ref_prefix and all[i + 1] ~= 'Success' then
        state = 'Failed'
        break
      end
    end
  end
  redis.call('HSET', KEYS[1], 'state', state, 'ended', now)
  return state
end
"""

CREATE = """
-- ARGV: ttl, now, n_fields*2 run fields..., then task keys (all Pending)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl, now, nfields = ARGV[1], ARGV[2], tonumber(ARGV[3])
local idx = 4
for i = 1, nfields do
  redis.call('HSET', KEYS[1], ARGV[idx], ARGV[idx + 1])
  idx = idx + 2
end
local ntasks = 0
for i = idx, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], 'Pending')
  ntasks = ntasks + 1
end
redis.call('HSET', KEYS[1], 'ntasks', ntasks, 'remaining', ntasks, 'created', now, 'updated', now)
for i = 1, 2 do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
"""

BEGIN = _COMMON + """
-- ARGV: ttl, now, key.  Returns {verdict, attempts}
local ttl, now, key = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', KEYS[2], key)
if not st then return {'missing', '0'} end
if st == 'Success' then return {'success', '0'} end
if redis.call('HGET', KEYS[1], 'cancelled') == '1' then return {'cancelled', '0'} end
if terminal(st) then return {'terminal', '0'} end
redis.call('HSET', KEYS[2], key, 'Running')
local n = redis.call('HINCRBY', KEYS[3], key, 1)
redis.call('HSET', KEYS[4], key, now)
redis.call('HDEL', KEYS[5], key)
if redis.call('HGET', KEYS[1], 'state') == 'Pending' then
  redis.call('HSET', KEYS[1], 'state', 'Running', 'started', now)
end
redis.call('HSET', KEYS[1], 'updated', now)
touch_ttl(ttl)
return {'run', tostring(n)}
"""

RETRYING = _COMMON + """
-- ARGV: ttl, now, key, error
local st = redis.call('HGET', KEYS[2], ARGV[3])
if st and not terminal(st) then
  redis.call('HSET', KEYS[2], ARGV[3], 'Retrying')
  redis.call('HSET', KEYS[7], ARGV[3], ARGV[4])
  redis.call('HSET', KEYS[1], 'updated', ARGV[2])
end
touch_ttl(ARGV[1])
return 1
"""

FINISH = _COMMON + """
-- ARGV: ttl, now, ref_prefix, key, state, output_json, error, trigger-failed keys...
-- Returns the run's end state if this call ended the run, else ''.
local ttl, now, ref_prefix = ARGV[1], ARGV[2], ARGV[3]
local key, state = ARGV[4], ARGV[5]
local changed = 0
local st = redis.call('HGET', KEYS[2], key)
if st and not terminal(st) then
  redis.call('HSET', KEYS[2], key, state)
  redis.call('HSET', KEYS[5], key, now)
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[6], key, ARGV[6]) end
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[7], key, ARGV[7]) end
  changed = changed + 1
end
for i = 8, #ARGV do
  local other = redis.call('HGET', KEYS[2], ARGV[i])
  if other and not terminal(other) then
    redis.call('HSET', KEYS[2], ARGV[i], 'TriggerFailed')
    redis.call('HSET', KEYS[7], ARGV[i], 'upstream ' .. key .. ' failed')
    changed = changed + 1
  end
end
local result = ''
if changed > 0 then
  redis.call('HSET', KEYS[1], 'updated', now)
  local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -changed)
  if remaining <= 0 then result = finalize(now, ref_prefix) end
end
touch_ttl(ttl)
return result
"""


def _as_function(script: str, name: str) -> str:
    """``script`` (one of the above, helpers included) as a Lua function ``name()``.

    Its body keeps reading KEYS/ARGV and returns what the script returned, so a script
    built on it stays exactly as atomic and as up to date as the one it wraps.
    """
    body = script[len(_COMMON):] if script.startswith(_COMMON) else script
    return f"local function {name}()\n{body}\nend\n"


BEGIN_READ = _COMMON + _as_function(BEGIN, "begin") + """
-- ARGV: BEGIN's own arguments (ttl, now, key, ...); then the run's 'created' the caller
-- knows ('' if none); then task keys whose stored outputs to return; last, how many of
-- the arguments are BEGIN's (so BEGIN can take more without this script changing).
-- Returns {verdict, attempts, created, artifacts, params (false if 'created' matched), outputs...}
local res = begin()
local nb = tonumber(ARGV[#ARGV])
local run = redis.call('HMGET', KEYS[1], 'created', 'artifacts')
local params = false
if run[1] ~= ARGV[nb + 1] then params = redis.call('HGET', KEYS[1], 'params') end
local out = {res[1], res[2], run[1], run[2], params}
for i = nb + 2, #ARGV - 1 do out[#out + 1] = redis.call('HGET', KEYS[6], ARGV[i]) end
return out
"""
