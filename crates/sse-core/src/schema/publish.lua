#!lua name=sse
--
-- The publish function of the SSE gateway's Redis schema (see schema/mod.rs).
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
