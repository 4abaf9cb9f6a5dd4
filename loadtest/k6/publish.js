// Publish load: a ramping arrival rate of single events against POST /v1/publish.
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e RATE=500 loadtest/k6/publish.js
import { check } from 'k6';
import { publish } from './lib.js';

const RATE = Number(__ENV.RATE || 200);

export const options = {
  scenarios: {
    publish: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: 20,
      maxVUs: 200,
      stages: [
        { target: RATE, duration: __ENV.RAMP || '10s' },
        { target: RATE, duration: __ENV.HOLD || '20s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:publish}': ['p(95)<100'],
    checks: ['rate>0.99'],
  },
};

export default function () {
  const res = publish(`k6-publish-${__VU % 10}`, { vu: __VU, iteration: __ITER, ts: Date.now() });
  check(res, { 'published (201)': (r) => r.status === 201 });
}
