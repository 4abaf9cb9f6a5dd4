// Subscriber load: many VUs each read a bounded stream of a topic prepared in setup(), checking
// order and count, then resume with the last id and check that nothing comes twice.
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e VUS=200 -e EVENTS=100 loadtest/k6/subscribe.js
import { check } from 'k6';
import exec from 'k6/execution';
import { publish, readStream } from './lib.js';

const EVENTS = Number(__ENV.EVENTS || 50);

export const options = {
  scenarios: {
    subscribe: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 50),
      duration: __ENV.DURATION || '20s',
    },
  },
  thresholds: {
    checks: ['rate==1'],
    'http_req_duration{name:events}': ['p(95)<2000'],
  },
};

export function setup() {
  const topic = `k6-subscribe-${Date.now()}`;
  for (let n = 0; n < EVENTS; n++) {
    const res = publish(topic, String(n));
    if (res.status !== 201) exec.test.abort(`setup: publish answered ${res.status}`);
  }
  return { topic };
}

export default function ({ topic }) {
  // The whole history, from the start: exactly EVENTS events, in publish order.
  const { res, events } = readStream(topic, '0-0', EVENTS, 10);
  const inOrder = events.every((event, n) => event.data === String(n));
  check(res, {
    'stream 200': (r) => r.status === 200,
    'every event, once, in order': () => events.length === EVENTS && inOrder,
  });
  // Resuming from the last id: nothing more (nothing was published since), no duplicate.
  const last = events.length ? events[events.length - 1].id : '0-0';
  const resumed = readStream(topic, last, 1, 1);
  check(resumed.res, { 'resume repeats nothing': () => resumed.events.length === 0 });
}
