// Mixed load: publishers at a constant rate on a few topics while subscribers read bounded
// streams and resume with Last-Event-ID, checking that ids only ever increase across resumes
// (nothing repeated, nothing out of order).
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e RATE=100 -e VUS=50 loadtest/k6/mixed.js
import { check } from 'k6';
import { idLess, publish, readStream } from './lib.js';

const TOPICS = 5;
const DURATION = __ENV.DURATION || '20s';

export const options = {
  scenarios: {
    publishers: {
      executor: 'constant-arrival-rate',
      exec: 'publisher',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
    subscribers: {
      executor: 'constant-vus',
      exec: 'subscriber',
      vus: Number(__ENV.VUS || 20),
      duration: DURATION,
    },
  },
  thresholds: {
    'checks{scenario:publishers}': ['rate>0.99'],
    'checks{scenario:subscribers}': ['rate==1'],
  },
};

export function publisher() {
  const res = publish(`k6-mixed-${__ITER % TOPICS}`, { ts: Date.now() });
  check(res, { 'published (201)': (r) => r.status === 201 });
}

// Each subscriber VU keeps its position across requests, as a reconnecting EventSource does.
let position = '';
export function subscriber() {
  const topic = `k6-mixed-${__VU % TOPICS}`;
  const { res, events } = readStream(topic, position, 20, 2);
  let ordered = true;
  let previous = position && position !== '0-0' ? position : null;
  for (const event of events) {
    if (previous && !idLess(previous, event.id)) ordered = false;
    previous = event.id;
  }
  check(res, {
    'stream 200': (r) => r.status === 200,
    'ids only increase across resumes': () => ordered,
  });
  if (previous) position = previous;
  // A fresh stream's first position arrives as a bare id; start there next time.
  if (!position) {
    const bare = (res.body || '').match(/^id: (\S+)$/m);
    if (bare) position = bare[1];
  }
}
