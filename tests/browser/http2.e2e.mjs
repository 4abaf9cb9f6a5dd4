// Eight EventSources from one page over https through nginx: over HTTP/1.1 a browser opens at
// most six connections per origin, so the seventh and eighth would wait without a word; over
// nginx's TLS port the page speaks HTTP/2, every stream shares one connection, and all eight
// receive their event.
//
// Run by crates/sse-gateway/tests/browser.rs against deploy/local/run.sh; by hand:
//   E2E_BASE_URL=https://127.0.0.1:8443 node http2.e2e.mjs
//
// Environment:
//   E2E_BASE_URL   nginx's TLS port, serving the demo page, /events and /v1/publish (required);
//                  its certificate may be self-signed
//   E2E_ARTIFACTS  where the screenshot goes (default target/e2e)
//   CHROMIUM_BIN   the browser (default /usr/bin/chromium)
//   E2E_TOKEN      publish token (default dev-token)

import { resolve } from "node:path";
import { runPage, until } from "./lib.mjs";

const BASE = (process.env.E2E_BASE_URL || fail("E2E_BASE_URL is not set")).replace(/\/$/, "");
const ARTIFACTS = resolve(process.env.E2E_ARTIFACTS || "target/e2e");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const TOKEN = process.env.E2E_TOKEN || "dev-token";
const STREAMS = 8; // more than the six HTTP/1.1 connections a browser opens per origin

function fail(message) {
  console.error(`http2 e2e FAILED: ${message}`);
  process.exit(1);
}

function log(message) {
  console.log(`[e2e] ${message}`);
}

async function run(page, pageErrors) {
  // A page of nginx's own origin (the demo page's directory); the demo's stream is closed so
  // that only this test's streams are open.
  await page.goto(`${BASE}/?topics=h2-unused`);
  const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  if (protocol !== "h2") throw new Error(`the page was served over ${protocol}, not h2`);
  log(`page served over ${protocol}`);
  await page.evaluate((streams) => {
    document.getElementById("disconnect").click();
    window.opened = 0;
    window.received = {};
    for (let i = 0; i < streams; i++) {
      const source = new EventSource(`/events?topic=h2-${i}`);
      source.onopen = () => { window.opened += 1; };
      source.onmessage = (event) => { window.received[i] = event.data; };
    }
  }, STREAMS);
  await until(`${STREAMS} streams to open`, 15_000, () => page.evaluate((n) => window.opened === n, STREAMS));
  log(`${STREAMS} streams open`);
  // Publish until each stream has its event: an event published before a stream's
  // subscription is live is not for it (it started at "now"), so repeat what is missing.
  await until(`an event on each of the ${STREAMS} streams`, 20_000, () =>
    page.evaluate(async ({ streams, token }) => {
      for (let i = 0; i < streams; i++) {
        if (window.received[i]) continue;
        const response = await fetch("/v1/publish", {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
          body: JSON.stringify({ topic: `h2-${i}`, data: `to ${i}` }),
        });
        if (response.status !== 201) throw new Error(`publish to h2-${i}: ${response.status}`);
      }
      await new Promise((r) => setTimeout(r, 200));
      return Object.keys(window.received).length === streams;
    }, { streams: STREAMS, token: TOKEN }),
  );
  const received = await page.evaluate(() => window.received);
  for (let i = 0; i < STREAMS; i++) {
    if (received[i] !== `to ${i}`) throw new Error(`stream ${i} received ${JSON.stringify(received[i])}`);
  }
  const streams = await page.evaluate(() =>
    performance.getEntriesByType("resource").filter((e) => e.name.includes("/events?topic=h2-")).map((e) => e.nextHopProtocol),
  );
  log(`every stream got its event; the streams' protocols: ${[...new Set(streams)].join(", ") || "(still open)"}`);
  if (pageErrors.length) throw new Error(`errors on the page:\n  ${pageErrors.join("\n  ")}`);
}

runPage(
  {
    executablePath: CHROMIUM,
    deadlineMs: 60_000,
    artifacts: ARTIFACTS,
    name: "http2",
    log,
    fail,
    onConsoleError: (text, pageErrors) => pageErrors.push(text),
    ignoreHTTPSErrors: true,
  },
  run,
).catch((error) => fail(error.stack || String(error)));
