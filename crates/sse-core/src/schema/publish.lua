#!lua name=sse
--
-- The functions of the SSE gateway's Redis schema (see schema/mod.rs): sse_publish, and
-- sse_presence, with which gateways record who is listening (schema/presence.rs).
--
--   FCALL sse_publish 1 sse:{<topic>}:stream <data> <event> <maxlen> <max-age-ms> [<idle-ms>]
--   FCALL sse_publish 2 sse:{<topic>}:stream sse:{<topic>}:idempotency:<key>
--                       <data> <event> <maxlen> <max-age-ms> <idle-ms> <window-ms> [<index> <count>]
--
-- One atomic call: append the event to the topic's stream (XADD, trimmed to about <maxlen>
-- entries, and to <max-age-ms> when that is not 0; when <idle-ms> is not 0, the whole stream
-- expires that long after this append unless another one comes first), then announce
-- "<id>\n<event>\n<data>" on the topic's channel. Returns the id Redis assigned. Invalid input is refused before anything is
-- written, so a failed call has written nothing.
--
-- With a second key, the call publishes at most once per idempotency key (schema/idempotency.rs):
-- the key's record, a hash, says what a request with that key published in the last
-- <window-ms>. The event is position <index> (from 0) of a request of <count> events (a batch
-- sends one call per event, in one MULTI, all with the same record; one event: 0 and 1). If the
-- record already holds this position with the same topic, name and data, nothing is written
-- and the call returns {<the id it got then>, 1}; if it was made for another request (another
-- count, or other content at this position), the call fails with a CONFLICT error and writes
-- nothing; otherwise the event is appended, recorded, and the call returns {<id>, 0}.
--
-- The rules below mirror sse-core's Topic, EventName and IdempotencyKey; a change here is a
-- schema change.
--
-- The announcement goes out with PUBLISH on one Redis. On a Redis Cluster it must be SPUBLISH
-- (sharded pub/sub: only the shard that owns the topic's slot carries it): the library loaded
-- there has the next line changed to 'SPUBLISH', nothing else.
local ANNOUNCE = 'PUBLISH'

local USAGE = 'usage: FCALL sse_publish 1 sse:{<topic>}:stream <data> <event or ""> <maxlen> <max-age-ms or 0> [<idle-ms or 0>]' ..
  ', or FCALL sse_publish 2 sse:{<topic>}:stream sse:{<topic>}:idempotency:<key> <data> <event or ""> <maxlen> <max-age-ms or 0> <idle-ms or 0> <window-ms> [<index> <count>]'

local function fail(message)
  return redis.error_reply('ERR sse_publish: ' .. message)
end

local function whole(value, least)
  local number = tonumber(value)
  if number and number >= least and number == math.floor(number) then
    return number
  end
end

-- Appends one event to <topic>'s stream and announces it; returns its id.
local function append(topic, stream, data, event, maxlen, max_age, idle)
  local id
  if event == '' then
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'data', data)
  else
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'data', data, 'event', event)
  end
  if max_age > 0 then
    local now = redis.call('TIME')
    local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
    if oldest > 0 then
      redis.call('XTRIM', stream, 'MINID', '~', string.format('%d', oldest))
    end
  end
  if idle > 0 then
    redis.call('PEXPIRE', stream, idle)
  end
  redis.call(ANNOUNCE, 'sse:{' .. topic .. '}:live', id .. '\n' .. event .. '\n' .. data)
  return id
end

local function publish(keys, args)
  local keyed = #keys == 2 and (#args == 6 or #args == 8)
  if not keyed and (#keys ~= 1 or (#args ~= 4 and #args ~= 5)) then
    return fail(USAGE)
  end
  local stream, data, event = keys[1], args[1], args[2]
  local topic = string.match(stream, '^sse:{([%w_.:/%-]+)}:stream$')
  if not topic or #topic > 128 then
    return fail('key ' .. string.format('%q', string.sub(stream, 1, 200)) ..
      ' is not sse:{<topic>}:stream with a topic of 1 to 128 ASCII letters, digits and _ - . : /')
  end
  if #event > 128 or string.find(event, '[\r\n%z]') or string.sub(event, 1, 4) == 'sse.' then
    return fail('event name must be at most 128 bytes, without CR, LF or NUL, and not start with "sse."')
  end
  local maxlen, max_age, idle = whole(args[3], 1), whole(args[4], 0), whole(args[5] or 0, 0)
  if not maxlen then
    return fail('maxlen must be a whole number of at least 1; ' .. USAGE)
  end
  if not max_age then
    return fail('max-age-ms must be a whole number of milliseconds, 0 for no age limit; ' .. USAGE)
  end
  if not idle then
    return fail('idle-ms must be a whole number of milliseconds, 0 to keep an idle stream; ' .. USAGE)
  end

  -- With a record: its key, this event's position in its request and digest, and whether
  -- the record exists already.
  local record, index, count, window, digest, recorded
  if keyed then
    record = keys[2]
    local tag, key = string.match(record, '^sse:{([%w_.:/%-]+)}:idempotency:([!-~]+)$')
    if not tag or #tag > 128 or #key > 255 then
      return fail('key ' .. string.format('%q', string.sub(record, 1, 300)) ..
        ' is not sse:{<topic>}:idempotency:<key> with a key of 1 to 255 visible ASCII characters')
    end
    window, index, count = whole(args[6], 1), whole(args[7] or 0, 0), whole(args[8] or 1, 1)
    if not window then
      return fail('window-ms must be a whole number of milliseconds, at least 1; ' .. USAGE)
    end
    if not index or not count or index >= count then
      return fail('index must be a whole number below count; ' .. USAGE)
    end
    digest = redis.sha1hex(topic .. '\n' .. event .. '\n' .. data)
    local seen = redis.call('HMGET', record, 'count', 'digest:' .. index, 'id:' .. index)
    recorded = seen[1] ~= false
    if recorded then
      if tonumber(seen[1]) ~= count or (seen[2] and seen[2] ~= digest) then
        return redis.error_reply('CONFLICT sse_publish: idempotency key ' .. string.format('%q', key) ..
          ' was used for a different request within its window; nothing was published')
      end
      if seen[3] then
        return {seen[3], 1}
      end
      -- Recorded by an earlier position of this same request, or by a request that failed
      -- after them: this position is still to be written.
    end
  end

  local id = append(topic, stream, data, event, maxlen, max_age, idle)
  if record then
    redis.call('HSET', record, 'count', count, 'digest:' .. index, digest, 'id:' .. index, id)
    if not recorded then
      redis.call('PEXPIRE', record, window)
    end
    return {id, 0}
  end
  return id
end

redis.register_function('sse_publish', publish)

--   FCALL sse_presence 2 sse:{presence:<topic>}:present sse:{presence:<topic>}:stream
--                        <node> <maxlen> <idle-ms> <ttl-ms> <op> <subject> [<op> <subject> ...]
--
-- One gateway node's changes to who is listening on <topic>, in one atomic call. The hash
-- sse:{presence:<topic>}:present maps each subject (a token's `sub`) to the space-separated
-- ids of the nodes it has streams on. Op '+': <node> holds <subject> now; '-': no longer; '*'
-- (with an empty subject): <node> holds nobody any more (it is gone). A subject that gets its
-- first node is announced as event `join`, one that loses its last node as event `leave`, on
-- the companion topic presence:<topic>, exactly as sse_publish appends and announces (stream
-- trimmed to about <maxlen> entries, expiring <idle-ms> after its last append when not 0), with
-- data {"topic":"<topic>","sub":"<subject>"}. The hash expires <ttl-ms> after the last call.
-- Returns {<joins>, <leaves>}. Invalid input is refused before anything is written.
local PRESENCE_USAGE = 'usage: FCALL sse_presence 2 sse:{presence:<topic>}:present sse:{presence:<topic>}:stream' ..
  ' <node> <maxlen> <idle-ms or 0> <ttl-ms> <+|-|*> <subject> [<+|-|*> <subject> ...]'

local function presence_fail(message)
  return redis.error_reply('ERR sse_presence: ' .. message)
end

local function split(list)
  local nodes = {}
  for node in string.gmatch(list or '', '%S+') do
    nodes[#nodes + 1] = node
  end
  return nodes
end

local function presence(keys, args)
  if #keys ~= 2 or #args < 6 or #args % 2 ~= 0 then
    return presence_fail(PRESENCE_USAGE)
  end
  local present, stream = keys[1], keys[2]
  local companion = string.match(present, '^sse:{(presence:[%w_.:/%-]+)}:present$')
  if not companion or #companion > 128 or stream ~= 'sse:{' .. companion .. '}:stream' then
    return presence_fail('keys must be sse:{presence:<topic>}:present and sse:{presence:<topic>}:stream of one topic; ' ..
      PRESENCE_USAGE)
  end
  local node = args[1]
  if #node > 64 or not string.match(node, '^[%w_.%-]+$') then
    return presence_fail('node must be 1 to 64 ASCII letters, digits, _ - or .')
  end
  local maxlen, idle, ttl = whole(args[2], 1), whole(args[3], 0), whole(args[4], 1)
  if not maxlen or not idle or not ttl then
    return presence_fail('maxlen and ttl-ms must be whole numbers of at least 1, idle-ms of at least 0; ' .. PRESENCE_USAGE)
  end
  for i = 5, #args, 2 do
    local op, subject = args[i], args[i + 1]
    if not (op == '+' or op == '-' or (op == '*' and subject == '')) then
      return presence_fail('op must be + or - with a subject, or * with an empty one; ' .. PRESENCE_USAGE)
    end
    if (op ~= '*' and subject == '') or #subject > 1024 then
      return presence_fail('a subject must be 1 to 1024 bytes')
    end
  end

  local topic = string.sub(companion, 10)
  local joins, leaves = 0, 0
  local function announce(event, subject)
    -- Topics need no escaping; cjson escapes the subject (a table would not keep key order).
    local data = '{"topic":"' .. topic .. '","sub":' .. cjson.encode(subject) .. '}'
    append(companion, stream, data, event, maxlen, 0, idle)
  end
  local function leave(subject, nodes)
    local left = {}
    for _, held in ipairs(nodes) do
      if held ~= node then
        left[#left + 1] = held
      end
    end
    if #left == #nodes then
      return
    end
    if #left == 0 then
      redis.call('HDEL', present, subject)
      announce('leave', subject)
      leaves = leaves + 1
    else
      redis.call('HSET', present, subject, table.concat(left, ' '))
    end
  end
  for i = 5, #args, 2 do
    local op, subject = args[i], args[i + 1]
    if op == '+' then
      local nodes = split(redis.call('HGET', present, subject))
      local held = false
      for _, other in ipairs(nodes) do
        held = held or other == node
      end
      if not held then
        nodes[#nodes + 1] = node
        redis.call('HSET', present, subject, table.concat(nodes, ' '))
        if #nodes == 1 then
          announce('join', subject)
          joins = joins + 1
        end
      end
    elseif op == '-' then
      leave(subject, split(redis.call('HGET', present, subject)))
    else
      local all = redis.call('HGETALL', present)
      for j = 1, #all, 2 do
        leave(all[j], split(all[j + 1]))
      end
    end
  end
  if redis.call('EXISTS', present) == 1 then
    redis.call('PEXPIRE', present, ttl)
  end
  return {joins, leaves}
end

redis.register_function('sse_presence', presence)
