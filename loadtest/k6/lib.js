// Shared by the k6 scripts: where the system is, and how to read a bounded event stream.
import http from 'k6/http';

export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8000';
export const TOKEN = __ENV.TOKEN || 'dev-token';

// POST /v1/publish; returns the response.
export function publish(topic, data) {
  return http.post(`${BASE}/v1/publish`, JSON.stringify({ topic, data }), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
    tags: { name: 'publish' },
  });
}

// GET a bounded stream (the gateway ends it after maxEvents events or maxSeconds seconds) and
// parse its events: [{id, data}], in order. k6 reads whole responses, hence the bounds.
export function readStream(topic, lastEventId, maxEvents, maxSeconds) {
  let url = `${BASE}/events?topic=${encodeURIComponent(topic)}&max_events=${maxEvents}&max_seconds=${maxSeconds}`;
  if (lastEventId) url += `&lastEventId=${encodeURIComponent(lastEventId)}`;
  const res = http.get(url, { tags: { name: 'events' }, timeout: `${maxSeconds + 10}s` });
  const events = [];
  for (const block of (res.body || '').split('\n\n')) {
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) id = line.slice(4);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length) events.push({ id, data: data.join('\n') });
  }
  return { res, events };
}

// Stream ids compare as <ms>-<seq> pairs.
export function idLess(a, b) {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs);
}
