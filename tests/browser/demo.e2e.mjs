// The demo page (deploy/demo) in a real Chromium, served through nginx, while the gateway that
// serves its stream is killed: the browser's own EventSource must reconnect through nginx to the
// other gateway, resume with Last-Event-ID, and show every event exactly once, in order. Before
// that, the page shows its own stream in the fleet's listener count.
//
// Run by crates/sse-gateway/tests/browser.rs against deploy/local/run.sh; by hand:
//   E2E_BASE_URL=http://127.0.0.1:8000 E2E_GATEWAYS=8080:<pid>,8082:<pid> node demo.e2e.mjs
//
// Environment:
//   E2E_BASE_URL   nginx, serving the demo page, /events and /v1/publish (required)
//   E2E_GATEWAYS   the gateways behind nginx, as port:pid,port:pid (required); the one holding
//                  the page's stream is sent SIGKILL
//   E2E_ARTIFACTS  where the screenshot goes (default target/e2e)
//   CHROMIUM_BIN   the browser (default /usr/bin/chromium)
//   E2E_TOKEN      publish token (default dev-token)

import { resolve } from "node:path";
import { publish as publishVia, runPage, sleep, until } from "./lib.mjs";

const BASE = required("E2E_BASE_URL").replace(/\/$/, "");
const GATEWAYS = required("E2E_GATEWAYS")
  .split(",")
  .map((pair) => pair.split(":").map(Number))
  .map(([port, pid]) => ({ port, pid }));
const ARTIFACTS = resolve(process.env.E2E_ARTIFACTS || "target/e2e");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const TOKEN = process.env.E2E_TOKEN || "dev-token";
const TOPIC = "e2e";
const EVENTS = 40; // published in all, data "1".."40"
const KILL_AFTER = 15; // the gateway is killed once this many are published
const DEADLINE_MS = 90_000; // the whole run; the Rust side waits longer

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(message) {
  console.error(`demo e2e FAILED: ${message}`);
  process.exit(1);
}

function log(message) {
  console.log(`[e2e] ${message}`);
}


/** Publishes `data` on TOPIC through nginx, with the publisher's static token. */
const publish = (data) => publishVia(BASE, TOKEN, TOPIC, data);

/** The value of `metric` (unlabelled) on the gateway at `port`, straight from its /metrics. */
async function metric(port, name) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in :${port}/metrics`);
  return Number(line.split(" ")[1]);
}

const activeStreams = (port) => metric(port, "sse_connections_active");

/** The gateway holding the page's one stream (the other holds none). */
async function servingGateway(among) {
  return until("one gateway to hold the page's stream", 10_000, async () => {
    const counts = await Promise.all(among.map((g) => activeStreams(g.port)));
    const total = counts.reduce((a, b) => a + b, 0);
    return total === 1 ? among[counts.indexOf(1)] : null;
  });
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

async function run(page, pageErrors) {
  const url = `${BASE}/?topics=${TOPIC}`;
  log(`opening ${url}`);
  await page.goto(url);
  await until('status "open"', 15_000, async () => (await page.textContent("#status")) === "open");

  // The stream is open, but its position (a bare `id:` the page cannot see) is fixed only once
  // the gateway's subscription is live. An event the page shows proves it is: publish a warm-up
  // through the page's own form until one appears, so every later event is after the position.
  await until("the page to show a position", 15_000, async () => {
    await page.fill("#publish-topic", TOPIC);
    await page.fill("#publish-data", "warm-up");
    await page.fill("#publish-token", TOKEN);
    const before = await page.textContent("#publish-result");
    await page.click("#publish button[type=submit]");
    await until("the form's publish result", 5_000, async () => {
      const result = await page.textContent("#publish-result");
      return result !== before && result;
    });
    const result = await page.textContent("#publish-result");
    if (!result.startsWith("201 ")) throw new Error(`the page's publish form got: ${result}`);
    await sleep(300);
    return (await page.textContent("#last-id")) !== "–";
  });
  log(`page open at position ${await page.textContent("#last-id")}`);
  // Its own stream shows in the fleet's count once its gateway refreshed (--count-refresh 10 s).
  const listening = `${TOPIC}: 1 on 1 node`;
  await until(`the page to show "${listening}"`, 25_000, async () => (await page.textContent("#listeners")) === listening);
  log(`the page shows the fleet's count: ${listening}`);

  const victim = await servingGateway(GATEWAYS);
  const survivor = GATEWAYS.find((g) => g !== victim);
  log(`the page's stream is on the gateway at :${victim.port} (pid ${victim.pid})`);

  for (let n = 1; n <= KILL_AFTER; n++) {
    await publish(String(n));
    await sleep(25);
  }
  process.kill(victim.pid, "SIGKILL");
  log(`killed the gateway at :${victim.port} (SIGKILL) after publishing event ${KILL_AFTER}`);
  // Keep publishing through the outage: the browser waits `retry` (1 s) before reconnecting,
  // so part of these is replayed from Redis on the other gateway and the rest arrives live.
  for (let n = KILL_AFTER + 1; n <= EVENTS; n++) {
    await publish(String(n));
    await sleep(80);
  }

  await until(`the page to show event ${EVENTS}`, 20_000, async () =>
    (await tableRows(page)).some((r) => r.kind === "event" && r.cells[3] === String(EVENTS)),
  );
  await sleep(500); // anything arriving late (a duplicate) would show up by now

  const rows = await tableRows(page);
  const data = rows.filter((r) => r.kind === "event" && r.cells[3] !== "warm-up").map((r) => r.cells[3]);
  const expected = Array.from({ length: EVENTS }, (_, i) => String(i + 1));
  if (JSON.stringify(data) !== JSON.stringify(expected)) {
    throw new Error(`events on the page, in arrival order:\n  ${data.join(" ")}\nexpected:\n  ${expected.join(" ")}`);
  }
  const control = rows.filter((r) => r.kind === "control");
  if (control.length) throw new Error(`unexpected control events: ${JSON.stringify(control)}`);
  const reconnects = rows.filter((r) => r.kind === "reconnect");
  if (reconnects.length < 1) throw new Error("the page shows no reconnect");
  const connections = Number(await page.textContent("#connections"));
  if (connections < 2) throw new Error(`the page counted ${connections} connection(s), expected a reconnect`);
  const status = await page.textContent("#status");
  if (status !== "open") throw new Error(`the page's status is "${status}", expected "open"`);
  // The reconnect sits where the outage was: after event 1, before the last event.
  const at = rows.findIndex((r) => r.kind === "reconnect");
  const seen = (slice, n) => slice.some((r) => r.kind === "event" && r.cells[3] === String(n));
  if (!seen(rows.slice(0, at), 1) || !seen(rows.slice(at), EVENTS)) {
    throw new Error("the reconnect is not between the first and the last event");
  }
  const now = await servingGateway([survivor]);
  if (now !== survivor) throw new Error(`the stream is not on the surviving gateway :${survivor.port}`);
  if (pageErrors.length) throw new Error(`errors on the page:\n  ${pageErrors.join("\n  ")}`);

  log(`all ${EVENTS} events exactly once and in order; ${reconnects.length} reconnect(s): ${reconnects[0].cells[2]}`);
  // Events published while the browser was away reach it from Redis (the Last-Event-ID resume).
  const replayed = await metric(survivor.port, "sse_replayed_events_total");
  if (replayed < 1) throw new Error(`the gateway at :${survivor.port} replayed nothing on resume`);
  log(`the stream resumed on the gateway at :${survivor.port}, which replayed ${replayed} missed event(s)`);
}

async function main() {
  await runPage(
    {
      executablePath: CHROMIUM,
      deadlineMs: DEADLINE_MS,
      artifacts: ARTIFACTS,
      name: "demo",
      log,
      fail,
    // The one error expected: the stream the killed gateway was serving breaks off.
    onConsoleError: (text, pageErrors) => {
      if (!text.includes("ERR_INCOMPLETE_CHUNKED_ENCODING")) pageErrors.push(text);
    },
    },
    run,
  );
}

main().catch((error) => fail(error.stack || String(error)));
