// Subscriber tokens from a page on another origin, in a real Chromium, through nginx: one
// page's EventSource sends its token as a cookie (`withCredentials: true`, which needs the
// gateway's --cors-credentials), another's in the `access_token` query parameter. Both must
// receive every event published through nginx; a third, without a token, must be refused.
//
// Run by crates/sse-gateway/tests/browser.rs against deploy/local/run.sh started with
// SSE_JWT_SECRET, SSE_JWT_COOKIE=sse_token, SSE_CORS_ORIGINS=<page origin>,
// SSE_CORS_CREDENTIALS=true.
//
// Environment:
//   E2E_BASE_URL      nginx: /events and /v1/publish (required)
//   E2E_PAGE_PORT     the port this script serves the other origin's page on (required)
//   E2E_SUBSCRIBE     a subscriber token allowing topic E2E_TOPIC (required)
//   E2E_TOPIC         the topic (default xorigin)
//   CHROMIUM_BIN      the browser (default /usr/bin/chromium)
//   E2E_TOKEN         publish token (default dev-token)

import { createServer } from "node:http";
import { launch, publish as publishVia, sleep, until } from "./lib.mjs";

const BASE = required("E2E_BASE_URL").replace(/\/$/, "");
const PAGE_PORT = Number(required("E2E_PAGE_PORT"));
const SUBSCRIBE = required("E2E_SUBSCRIBE");
const TOPIC = process.env.E2E_TOPIC || "xorigin";
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const TOKEN = process.env.E2E_TOKEN || "dev-token";
const EVENTS = 10;
const DEADLINE_MS = 60_000;

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(message) {
  console.error(`cross-origin e2e FAILED: ${message}`);
  process.exit(1);
}

const log = (message) => console.log(`[e2e] ${message}`);

/** Publishes `data` on TOPIC through nginx, with the publisher's static token. */
const publish = (data) => publishVia(BASE, TOKEN, TOPIC, data);

/** A blank page on the other origin: the test's pages run their EventSource from it. */
function servePage() {
  const server = createServer((_, response) => {
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end("<!doctype html><title>another origin</title><p>subscriber</p>");
  });
  return new Promise((ready) => server.listen(PAGE_PORT, "127.0.0.1", () => ready(server)));
}

/** Opens an EventSource on `url` from `page`; events and errors land in window globals. */
async function subscribe(page, url, withCredentials) {
  await page.evaluate(
    ([url, withCredentials]) => {
      window.received = [];
      window.opened = false;
      window.failures = 0;
      const source = new EventSource(url, { withCredentials });
      source.onopen = () => (window.opened = true);
      source.onmessage = (event) => window.received.push(event.data);
      source.onerror = () => (window.failures += 1);
      window.source = source;
    },
    [url, withCredentials],
  );
}

const received = (page) => page.evaluate(() => window.received);

async function run(browser) {
  const origin = `http://127.0.0.1:${PAGE_PORT}`;
  const context = await browser.newContext();
  // The token as the gateway's cookie: set for nginx's host, sent with credentials only.
  await context.addCookies([{ name: "sse_token", value: SUBSCRIBE, url: BASE }]);
  const [byCookie, byQuery, anonymous] = await Promise.all([1, 2, 3].map(() => context.newPage()));
  for (const page of [byCookie, byQuery, anonymous]) await page.goto(`${origin}/`);

  const events = `${BASE}/events?topic=${TOPIC}`;
  await subscribe(byCookie, events, true);
  await subscribe(byQuery, `${events}&access_token=${encodeURIComponent(SUBSCRIBE)}`, false);
  await subscribe(anonymous, events, false);
  for (const [name, page] of [["cookie", byCookie], ["query", byQuery]]) {
    await until(`the ${name} page's stream to open`, 15_000, () => page.evaluate(() => window.opened));
  }
  log("both streams open from another origin");

  // A warm-up until both show one: from then on each stream's position is fixed.
  await until("both pages to receive a warm-up event", 15_000, async () => {
    await publish("warm-up");
    await sleep(200);
    return (await received(byCookie)).length > 0 && (await received(byQuery)).length > 0;
  });
  const expected = Array.from({ length: EVENTS }, (_, i) => String(i + 1));
  for (const data of expected) await publish(data);
  for (const [name, page] of [["cookie", byCookie], ["query", byQuery]]) {
    const got = await until(`the ${name} page to receive ${EVENTS} events`, 15_000, async () => {
      const all = (await received(page)).filter((data) => data !== "warm-up");
      return all.length >= EVENTS ? all : null;
    });
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      throw new Error(`the ${name} page received ${JSON.stringify(got)}`);
    }
    log(`the ${name} page received all ${EVENTS} events in order`);
  }
  const refused = await until("the page without a token to be refused", 15_000, () =>
    anonymous.evaluate(() => window.failures > 0 && !window.opened),
  );
  if (!refused || (await received(anonymous)).length > 0) {
    throw new Error("the page without a token received events");
  }
  log("the page without a token was refused");
  await context.close();
}

async function main() {
  const timer = setTimeout(() => fail(`not done within ${DEADLINE_MS} ms`), DEADLINE_MS);
  const server = await servePage();
  const browser = await launch(CHROMIUM);
  log(`Chromium ${browser.version()}`);
  let failure = null;
  try {
    await run(browser);
  } catch (error) {
    failure = error;
  }
  await browser.close();
  server.close();
  clearTimeout(timer);
  if (failure) fail(failure.message);
  log("PASSED");
}

main().catch((error) => fail(error.stack || String(error)));
