// What the browser scripts share: waiting for a condition, launching Chromium the same way,
// publishing through nginx, and running one page to a screenshot and a verdict.

import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "playwright-core";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls `check` every 50 ms until it returns something truthy, which it returns. */
export async function until(what, timeoutMs, check) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Headless Chromium at `executablePath`; Playwright gives every launch a fresh profile. */
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      "--no-proxy-server",
    ],
  });
}

/** Publishes `data` on `topic` at `base`'s /v1/publish with the bearer `token`; expects 201. */
export async function publish(base, token, topic, data) {
  const response = await fetch(`${base}/v1/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ topic, data }),
  });
  if (response.status !== 201) {
    throw new Error(`publish ${data}: ${response.status} ${await response.text()}`);
  }
}

/**
 * One page's whole run: launches Chromium at `executablePath`, opens a page, runs
 * `body(page, pageErrors)` within `deadlineMs`, saves a screenshot of the page as
 * `<artifacts>/<name>.png` whatever happened, and ends the process through `fail` or with
 * "PASSED". Uncaught page errors are collected in `pageErrors`; each browser console error
 * is logged and handed to `onConsoleError(text, pageErrors)`, which may count it as one.
 * `ignoreHTTPSErrors` lets the page use a server with a self-signed certificate.
 */
export async function runPage({ executablePath, deadlineMs, artifacts, name, log, fail, onConsoleError, ignoreHTTPSErrors = false }, body) {
  const timer = setTimeout(() => fail(`not done within ${deadlineMs} ms`), deadlineMs);
  const browser = await launch(executablePath);
  log(`Chromium ${browser.version()}`);
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 }, ignoreHTTPSErrors });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    log(`browser console: ${message.text()}`);
    onConsoleError(message.text(), pageErrors);
  });
  let failure = null;
  try {
    await body(page, pageErrors);
  } catch (error) {
    failure = error;
  }
  mkdirSync(artifacts, { recursive: true });
  const screenshot = resolve(artifacts, `${name}.png`);
  await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => log(`no screenshot: ${e}`));
  log(`screenshot: ${screenshot}`);
  await browser.close();
  clearTimeout(timer);
  if (failure) fail(failure.message);
  log("PASSED");
}
