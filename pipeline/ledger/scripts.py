"""Lua scripts that make the ledger's state transitions atomic in Redis.

Every per-run script takes the same KEYS, in this order (``RunKeys`` in records.py, so
Python names them): run hash, task states, attempts, started, ended, outputs, errors,
logs stream (the last only so that ``touch_ttl`` keeps the logs alive exactly as long as
the record), KEYS[9], the task key -> Celery task id hash (see ``stale``), KEYS[10],
the task key -> earlier attempts hash (see ``keep_attempt``), KEYS[11], the artifacts'
digests, and KEYS[12], the cache entry each Cached task was served from. CREATE takes the
first two.
State names are written here as text; they are the values of ``TaskState`` and
``RunState`` (values.py), which a test checks.
"""

# Shared Lua helpers: refresh the TTL of every key touched; tell stale messages; keep an
# attempt about to be overwritten in the history; decide the run's end state and time.
_COMMON = """
local function touch_ttl(ttl)
  -- EXPIRE leaves a missing key missing (it replies 0), so no EXISTS first
  for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
end
local function succeeded(s)
  return s == 'Success' or s == 'Cached'
end
local function terminal(s)
  return succeeded(s) or s == 'Failed' or s == 'TriggerFailed' or s == 'Cancelled'
end
-- A message is stale when the run records another Celery id for its task key: a restart
-- re-sent that task, so the old message (a leftover of a cancelled or stuck canvas) may
-- neither begin, retry nor finish it. No id given, or none recorded: not stale.
local function stale(key, task_id)
  if KEYS[9] == nil or task_id == nil or task_id == '' then return false end
  local current = redis.call('HGET', KEYS[9], key)
  return current ~= false and current ~= task_id
end
-- An attempt is superseded when the task has begun again since it began: its worker was
-- declared dead (heartbeat expired) and a live one took the message over. Its late result
-- must change nothing. No attempt number given ('' or '0'): not checked.
local function superseded(key, attempt)
  if attempt == nil or attempt == '' or attempt == '0' then return false end
  return (redis.call('HGET', KEYS[3], key) or '0') ~= attempt
end
-- What an attempt that is about to be overwritten counts as in the history: a Running one
-- recorded no end (its process died, or its message came again), a Retrying one failed;
-- a Pending task's last attempt is in the history already (a restart put it there).
local function past_state(st)
  if st == 'Running' then return 'Unfinished' end
  if st == 'Retrying' then return 'Failed' end
  if st == 'Pending' then return nil end
  return st
end
-- Append the task's current attempt (number, start, end, state, error) to its JSON list
-- in KEYS[10], before a new attempt or a restart overwrites them (for the timeline).
local function keep_attempt(key, st)
  local state = past_state(st)
  if KEYS[10] == nil or state == nil then return end
  local started = redis.call('HGET', KEYS[4], key)
  if not started then return end
  -- times stay strings: cjson would keep only 14 digits of a unix time
  local entry = {attempt = tonumber(redis.call('HGET', KEYS[3], key) or '0'), state = state,
                 started = started}
  local ended, err = redis.call('HGET', KEYS[5], key), redis.call('HGET', KEYS[7], key)
  if ended then entry.ended = ended end
  if err then entry.error = err end
  local old = redis.call('HGET', KEYS[10], key)
  local list = {}
  if old then list = cjson.decode(old) end
  list[#list + 1] = entry
  redis.call('HSET', KEYS[10], key, cjson.encode(list))
end
-- Notifications (pipeline/ledger/notifications.py): if the run asked for ``event``
-- (its 'notify_events'), queue one delivery per destination of its 'notify' list, due now,
-- atomically with the transition that caused it. Keys pipeline:notify:* (not in KEYS: a
-- single Redis). ARGV[1] is the ttl in every per-run script.
local function notify(event, now)
  local dests = redis.call('HGET', KEYS[1], 'notify')
  if not dests or dests == '' or dests == '[]' then return end
  local wanted = ',' .. (redis.call('HGET', KEYS[1], 'notify_events') or '') .. ','
  if not string.find(wanted, ',' .. event .. ',', 1, true) then return end
  local run_id = redis.call('HGET', KEYS[1], 'id') or ''
  local event_id = 'evt_' .. run_id .. '_' .. event .. '_' .. redis.call('HINCRBY', KEYS[1], 'notify_seq', 1)
  local ttl = tonumber(ARGV[1])
  local all, mine = 'pipeline:notify:all', KEYS[1] .. ':notify'
  redis.call('ZREMRANGEBYSCORE', all, '-inf', tonumber(now) - ttl)
  for i, url in ipairs(cjson.decode(dests)) do
    local id = event_id .. '_' .. i
    local key = 'pipeline:notify:delivery:' .. id
    redis.call('HSET', key, 'id', id, 'event_id', event_id, 'event', 'run.' .. event, 'run_id', run_id,
               'url', url, 'status', 'pending', 'attempts', 0, 'created', now, 'next', now)
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', 'pipeline:notify:due', now, id)
    redis.call('ZADD', all, now, id)
    redis.call('RPUSH', mine, id)
  end
  redis.call('EXPIRE', mine, ttl)
end
local RUN_EVENT = {Success = 'succeeded', Failed = 'failed', Cancelled = 'cancelled'}
local function finalize(now, ref_prefix)
  local state = 'Success'
  if redis.call('HGET', KEYS[1], 'cancelled') == '1' then
    state = 'Cancelled'
  else
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, #ref_prefix) == ref_prefix and not succeeded(all[i + 1]) then
        state = 'Failed'
        break
      end
    end
  end
  -- The run ends no earlier than its last task: each caller stamps its own clock, so a
  -- task finished just before this call may carry a time a millisecond after ``now``.
  local ended = tonumber(now)
  for _, t in ipairs(redis.call('HVALS', KEYS[5])) do
    local v = tonumber(t)
    if v and v > ended then ended = v end
  end
  redis.call('HSET', KEYS[1], 'state', state, 'ended', string.format('%.6f', ended))
  redis.call('HDEL', KEYS[1], 'recovering')
  notify(RUN_EVENT[state], now)
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
-- ARGV: ttl, now, key, Celery task id, flow-version digest of the caller's code ('' or
-- absent: not checked).  Returns {verdict, attempts}; verdict 'version' (nothing
-- changed) when the run was recorded under another digest: this code must not run it.
local ttl, now, key = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', KEYS[2], key)
if not st then return {'missing', '0'} end
if stale(key, ARGV[4]) then return {'stale', '0'} end
if succeeded(st) then return {'success', '0'} end
if redis.call('HGET', KEYS[1], 'cancelled') == '1' then return {'cancelled', '0'} end
if terminal(st) then return {'terminal', '0'} end
if ARGV[5] and ARGV[5] ~= '' then
  local wanted = redis.call('HGET', KEYS[1], 'digest')
  if wanted and wanted ~= '' and wanted ~= ARGV[5] then return {'version', '0'} end
end
-- its last attempt recorded no end: its worker died and the message came back (reclaim)
if st == 'Running' and redis.call('HGET', KEYS[1], 'recovering') ~= '1' then
  redis.call('HSET', KEYS[1], 'recovering', '1')
  notify('recovered', now)
end
keep_attempt(key, st)
redis.call('HSET', KEYS[2], key, 'Running')
local n = redis.call('HINCRBY', KEYS[3], key, 1)
redis.call('HSET', KEYS[4], key, now)
redis.call('HDEL', KEYS[5], key)
redis.call('HDEL', KEYS[7], key)  -- an earlier attempt's error stays in its history
if KEYS[12] then redis.call('HDEL', KEYS[12], key) end  -- this attempt computes, or says where it came from
if redis.call('HGET', KEYS[1], 'state') == 'Pending' then
  redis.call('HSET', KEYS[1], 'state', 'Running', 'started', now)
end
redis.call('HSET', KEYS[1], 'updated', now)
touch_ttl(ttl)
return {'run', tostring(n)}
"""

RETRYING = _COMMON + """
-- ARGV: ttl, now, key, error, Celery task id, attempt number ('' or '0': unchecked)
-- Returns 1, 0 for a stale message, 2 for a superseded attempt (see ``superseded``).
if stale(ARGV[3], ARGV[5]) then return 0 end
if superseded(ARGV[3], ARGV[6]) then return 2 end
local st = redis.call('HGET', KEYS[2], ARGV[3])
if st and not terminal(st) then
  redis.call('HSET', KEYS[2], ARGV[3], 'Retrying')
  redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])  -- this attempt's end
  redis.call('HSET', KEYS[7], ARGV[3], ARGV[4])
  redis.call('HSET', KEYS[1], 'updated', ARGV[2])
end
touch_ttl(ARGV[1])
return 1
"""

FINISH = _COMMON + """
-- ARGV: ttl, now, ref_prefix, key, state, output_json, error, Celery task id,
--       attempt number ('' or '0': unchecked), the files the attempt wrote (JSON
--       {name: {size, sha256}}; '' none), the cache entry a Cached task came from
--       (JSON {key, run_id, task}; '' none), trigger-failed keys...
-- Returns the run's end state if this call ended the run, 'superseded' if the attempt was
-- (see ``superseded``: nothing changed but the files' record), else ''.
local ttl, now, ref_prefix = ARGV[1], ARGV[2], ARGV[3]
local key, state = ARGV[4], ARGV[5]
-- the files are on disk whatever the verdict below: record what they are now
if ARGV[10] ~= '' and KEYS[11] then redis.call('HSET', KEYS[11], key, ARGV[10]) end
if stale(key, ARGV[8]) then touch_ttl(ttl) return '' end
if superseded(key, ARGV[9]) then touch_ttl(ttl) return 'superseded' end
-- A task already ended (a redelivered copy of its message finished it while this attempt,
-- on a host cut off and back, was still running) ignores this late attempt entirely: its
-- failure must not mark downstream tasks TriggerFailed.
local changed = 0
local st = redis.call('HGET', KEYS[2], key)
if st and not terminal(st) then
  redis.call('HSET', KEYS[2], key, state)
  redis.call('HSET', KEYS[5], key, now)
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[6], key, ARGV[6]) end
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[7], key, ARGV[7]) end
  if ARGV[11] ~= '' and KEYS[12] then redis.call('HSET', KEYS[12], key, ARGV[11]) end
  changed = changed + 1
  for i = 12, #ARGV do
    local other = redis.call('HGET', KEYS[2], ARGV[i])
    if other and not terminal(other) then
      redis.call('HSET', KEYS[2], ARGV[i], 'TriggerFailed')
      redis.call('HSET', KEYS[7], ARGV[i], 'upstream ' .. key .. ' failed')
      changed = changed + 1
    end
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

RESTART = _COMMON + """
-- ARGV: ttl, now, ref_prefix, expected run state, expected run `updated`, new parameters
--       (JSON; '' keeps them), then pairs (task key, Celery id of its new message).
-- If the run is as the caller saw it, replace its parameters if given (restart --fail-rate
-- ...: with `restarts` below, workers read them anew), reset those tasks to Pending
-- (clearing their ended, error and output), record their new Celery ids, recount
-- `remaining`, clear the run's `ended` and `cancelled`, and put it back to Running
-- (Pending if it never started).
-- Returns {'ok', remaining, run state}, {'missing'} or {'changed'}.
local ttl, now, ref_prefix = ARGV[1], ARGV[2], ARGV[3]
local run = redis.call('HMGET', KEYS[1], 'state', 'updated', 'started')
if not run[1] then return {'missing'} end
if run[1] ~= ARGV[4] or (run[2] or '') ~= ARGV[5] then return {'changed'} end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'params', ARGV[6]) end
for i = 7, #ARGV - 1, 2 do
  local key, id = ARGV[i], ARGV[i + 1]
  local st = redis.call('HGET', KEYS[2], key)
  -- Success ones too (restart --from): the caller chose the keys from the states it read,
  -- and the `updated` check above says none of them changed since
  if st then
    keep_attempt(key, st)
    redis.call('HSET', KEYS[2], key, 'Pending')
    for k = 5, 7 do redis.call('HDEL', KEYS[k], key) end
    if KEYS[12] then redis.call('HDEL', KEYS[12], key) end
    redis.call('HSET', KEYS[9], key, id)
  end
end
local remaining = 0
local all = redis.call('HVALS', KEYS[2])
for i = 1, #all do
  if not terminal(all[i]) then remaining = remaining + 1 end
end
local state = 'Pending'
if run[3] and run[3] ~= '' then state = 'Running' end
redis.call('HSET', KEYS[1], 'state', state, 'remaining', remaining, 'cancelled', 0, 'updated', now)
redis.call('HDEL', KEYS[1], 'ended')
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
redis.call('HDEL', KEYS[1], 'recovering')
notify('recovered', now)
if remaining == 0 then state = finalize(now, ref_prefix) end
touch_ttl(ttl)
return {'ok', tostring(remaining), state}
"""

CANCEL = _COMMON + """
-- ARGV: ttl, now, ref_prefix.
-- Unless the run has ended: set cancelled=1, mark every task not yet ended Cancelled
-- (error 'cancelled'; a restart runs it again) and end the run (Cancelled).
-- Returns {'cancelled', key, state before, Celery id or '', ...}, {'missing'} or
-- {'finished', run state}.
local ttl, now, ref_prefix = ARGV[1], ARGV[2], ARGV[3]
local run_state = redis.call('HGET', KEYS[1], 'state')
if not run_state then return {'missing'} end
if run_state == 'Success' or run_state == 'Failed' or run_state == 'Cancelled' then
  return {'finished', run_state}
end
redis.call('HSET', KEYS[1], 'cancelled', 1)
local out = {'cancelled'}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local key, st = all[i], all[i + 1]
  if not terminal(st) then
    redis.call('HSET', KEYS[2], key, 'Cancelled')
    redis.call('HSET', KEYS[5], key, now)
    redis.call('HSET', KEYS[7], key, 'cancelled')
    out[#out + 1] = key
    out[#out + 1] = st
    out[#out + 1] = redis.call('HGET', KEYS[9], key) or ''
  end
end
redis.call('HSET', KEYS[1], 'remaining', 0, 'updated', now)
finalize(now, ref_prefix)
touch_ttl(ttl)
return out
"""

STUCK = _COMMON + """
-- KEYS: the run hash.  ARGV: ttl, now, the run's 'updated' as the stuck check read it.
-- Queues run.stuck once per stuck episode (an episode is one value of 'updated': any
-- progress starts a new one). Returns 1 if this call marked the episode, else 0.
local updated = redis.call('HGET', KEYS[1], 'updated')
if not updated or updated ~= ARGV[3] then return 0 end
if redis.call('HGET', KEYS[1], 'stuck_seen') == updated then return 0 end
redis.call('HSET', KEYS[1], 'stuck_seen', updated)
notify('stuck', ARGV[2])
return 1
"""

FORGET_EXPIRED = """
-- KEYS: runs index.  ARGV: cutoff (unix), run hash key prefix, limit.
-- Drops index entries created before cutoff whose run record no longer exists (expired).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    removed = removed + 1
  end
end
return removed
"""

DELETE_RUN = """
-- KEYS: every key of one run (run hash first), then the runs index.
-- ARGV: run id, the run's 'updated' field as last read ('' if there was no record).
-- Deletes them unless the run changed since it was read. Returns 1 deleted a record,
-- 0 cleaned up after a record that was already gone, -1 skipped (the run changed).
local updated = redis.call('HGET', KEYS[1], 'updated') or ''
if updated ~= ARGV[2] then return -1 end
for i = 1, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
redis.call('ZREM', KEYS[#KEYS], ARGV[1])
if updated == '' then return 0 end
return 1
"""

def _as_function(script: str, name: str) -> str:
    """``script`` (one of the above, helpers included) as a Lua function ``name()``.

    Its body keeps reading KEYS/ARGV and returns what the script returned, so a script
    built on it stays exactly as atomic and as up to date as the one it wraps.
    """
    body = script[len(_COMMON):] if script.startswith(_COMMON) else script
    return f"local function {name}()\n{body}\nend\n"


BEGIN_READ = _COMMON + _as_function(BEGIN, "begin") + """
-- ARGV: BEGIN's own arguments (ttl, now, key, ...); then the parameters' version the
-- caller knows ('' if none: 'created/restarts', returned in place of 'created'); then task keys whose stored outputs to return; last, how many of
-- the arguments are BEGIN's (so BEGIN can take more without this script changing).
-- Returns {verdict, attempts, created, artifacts, params (false if 'created' matched),
-- outputs..., then the same keys' records of the files they wrote (KEYS[11])...}
local res = begin()
local nb = tonumber(ARGV[#ARGV])
local run = redis.call('HMGET', KEYS[1], 'created', 'artifacts', 'restarts')
-- the parameters' version: the run's creation, and each restart (which may follow a fix)
local version = (run[1] or '') .. '/' .. (run[3] or '0')
local params = false
if version ~= ARGV[nb + 1] then params = redis.call('HGET', KEYS[1], 'params') end
local out = {res[1], res[2], version, run[2], params}
for i = nb + 2, #ARGV - 1 do out[#out + 1] = redis.call('HGET', KEYS[6], ARGV[i]) end
for i = nb + 2, #ARGV - 1 do out[#out + 1] = redis.call('HGET', KEYS[11], ARGV[i]) end
return out
"""
