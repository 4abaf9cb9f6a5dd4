// The demo page (deploy/demo) in a real Chromium, through nginx, in front of gateways that
// require subscriber tokens: the page's token expires mid-stream twice, and the page must show
// every event exactly once, in order.
//
//   1. A token valid ~3 s is put in the page's Token field and the page connects with it.
//   2. It expires: the gateway sends sse.token_expired and ends the stream; the page shows a
//      row saying so and stays closed (no reconnect with the expired token) while events are
//      published. A new token in the field makes it reconnect with its lastEventId at once.
//   3. That token is short too, and a third one goes into the field while it is still valid:
//      the page keeps its stream until the expiry, then reconnects at once with the third.
//
// Run by crates/sse-gateway/tests/browser.rs against deploy/local/run.sh started with
// SSE_JWT_SECRET; by hand:
//   SSE_JWT_SECRET=s deploy/local/run.sh   # then:
//   E2E_BASE_URL=http://127.0.0.1:8000 E2E_JWT_SECRET=s node token-expiry.e2e.mjs
//
// Environment:
//   E2E_BASE_URL    nginx, serving the demo page, /events and /v1/publish (required)
//   E2E_JWT_SECRET  the gateways' HS256 secret, to sign the page's tokens (required)
//   E2E_ARTIFACTS   where the screenshot goes (default target/e2e)
//   CHROMIUM_BIN    the browser (default /usr/bin/chromium)
//   E2E_TOKEN       publish token (default dev-token)

import { createHmac } from "node:crypto";
import { resolve } from "node:path";
import { publish as publishVia, runPage, sleep, until } from "./lib.mjs";

const BASE = required("E2E_BASE_URL").replace(/\/$/, "");
const SECRET = required("E2E_JWT_SECRET");
const ARTIFACTS = resolve(process.env.E2E_ARTIFACTS || "target/e2e");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const TOKEN = process.env.E2E_TOKEN || "dev-token";
const TOPIC = "expiry";
const SHORT_S = 3; // how long the short tokens are valid
const DEADLINE_MS = 90_000; // the whole run; the Rust side waits longer

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(message) {
  console.error(`token expiry e2e FAILED: ${message}`);
  process.exit(1);
}

function log(message) {
  console.log(`[e2e] ${message}`);
}

/** An HS256 token for `sub` that may read TOPIC, valid for about `seconds`. */
function sign(sub, seconds) {
  const part = (json) => Buffer.from(JSON.stringify(json)).toString("base64url");
  const exp = Math.ceil(Date.now() / 1000) + seconds;
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ exp, sub, sse: { subscribe: [TOPIC] } })}`;
  return `${unsigned}.${createHmac("sha256", SECRET).update(unsigned).digest("base64url")}`;
}

/** Publishes `data` on TOPIC through nginx, with the publisher's static token. */
const publish = (data) => publishVia(BASE, TOKEN, TOPIC, data);

/** Publishes the data `from`..`to`, `gapMs` apart. */
async function publishRange(from, to, gapMs) {
  for (let n = from; n <= to; n++) {
    await publish(String(n));
    await sleep(gapMs);
  }
}

/** The page's event table in arrival order (the page puts the newest row on top). */
async function tableRows(page) {
  const rows = await page.$$eval("#events tr", (trs) =>
    trs.map((tr) => ({
      kind: tr.className || "event",
      cells: [...tr.children].map((td) => td.textContent),
    })),
  );
  return rows.reverse();
}

const rowsOf = async (page, kind) => (await tableRows(page)).filter((r) => r.kind === kind);
const connections = async (page) => Number(await page.textContent("#connections"));
const status = (page) => page.textContent("#status");

async function run(page, pageErrors) {
  const refused = await fetch(`${BASE}/events?topic=${TOPIC}`);
  if (refused.status !== 401) throw new Error(`a stream without a token got ${refused.status}, not 401`);

  // The page connects at once without a token, which is refused; it retries every 2 s. The
  // Connect button starts over with the token in the field.
  await page.goto(`${BASE}/?topics=${TOPIC}`);
  await page.fill("#token", sign("first", SHORT_S));
  await page.click("#subscribe button[type=submit]");
  await until('status "open"', 10_000, async () => (await status(page)) === "open");
  // An event the page shows proves the gateway's subscription is live, so every later event
  // is after the stream's position (see demo.e2e.mjs).
  await until("the page to show a position", 10_000, async () => {
    await publish("warm-up");
    await sleep(200);
    return (await page.textContent("#last-id")) !== "–";
  });
  log(`stream open with a ${SHORT_S} s token at ${await page.textContent("#last-id")}`);
  await publishRange(1, 10, 25);

  // 1. The token expires; the page waits for a new one and does not reconnect meanwhile.
  await until("the first expiry row", 10_000, async () => (await rowsOf(page, "expired")).length === 1);
  log(`token expired; status "${await status(page)}"`);
  await publishRange(11, 20, 80); // longer than the browser's 1 s retry
  if ((await status(page)) !== "token expired") throw new Error(`status "${await status(page)}" while waiting for a token`);
  if ((await connections(page)) !== 1) throw new Error("the page reconnected with its expired token");

  // 2. A new token in the field: the page resumes at once.
  await page.fill("#token", sign("second", SHORT_S));
  await until("the reconnect with the second token", 5_000, async () => (await connections(page)) === 2);
  log("reconnected with a new token");
  await publishRange(21, 30, 25);

  // 3. A third token while the second is valid: nothing happens until the second expires,
  //    then the page reconnects with the third at once.
  await page.fill("#token", sign("third", 3600));
  await sleep(300);
  if ((await connections(page)) !== 2) throw new Error("the page reconnected before its token expired");
  await until("the second expiry row", 10_000, async () => (await rowsOf(page, "expired")).length === 2);
  await until("the reconnect with the third token", 5_000, async () => (await connections(page)) === 3);
  log("second token expired; reconnected with the third at once");
  await publishRange(31, 40, 25);

  await until("the page to show event 40", 15_000, async () =>
    (await tableRows(page)).some((r) => r.kind === "event" && r.cells[3] === "40"),
  );
  await sleep(500); // anything arriving late (a duplicate) would show up by now

  const rows = await tableRows(page);
  const data = rows.filter((r) => r.kind === "event" && r.cells[3] !== "warm-up").map((r) => r.cells[3]);
  const expected = Array.from({ length: 40 }, (_, i) => String(i + 1));
  if (JSON.stringify(data) !== JSON.stringify(expected)) {
    throw new Error(`events on the page, in arrival order:\n  ${data.join(" ")}\nexpected:\n  ${expected.join(" ")}`);
  }
  const kinds = rows.map((r) => r.kind).filter((kind) => kind !== "event");
  if (JSON.stringify(kinds) !== JSON.stringify(["expired", "reconnect", "expired", "reconnect"])) {
    throw new Error(`expected each expiry to be followed by its reconnect, got: ${kinds.join(" ")}`);
  }
  if ((await status(page)) !== "open") throw new Error(`the page's status is "${await status(page)}", expected "open"`);
  if (pageErrors.length) throw new Error(`errors on the page:\n  ${pageErrors.join("\n  ")}`);
  log("all 40 events exactly once and in order across two expiries");
}

async function main() {
  await runPage(
    {
      executablePath: CHROMIUM,
      deadlineMs: DEADLINE_MS,
      artifacts: ARTIFACTS,
      name: "token-expiry",
      log,
      fail,
    // The first stream, without a token, is refused: console errors are shown, not failures.
    onConsoleError: () => {},
    },
    run,
  );
}

main().catch((error) => fail(error.stack || String(error)));
