// What the browser scripts share: waiting for a condition, launching Chromium the same way,
// publishing through nginx, and ending a run with a screenshot and a verdict.

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
 * Runs `body()`, then saves a screenshot of `page` as `<artifacts>/<name>.png` whatever
 * happened, closes `browser`, and returns the error `body` threw, if any.
 */
export async function recorded({ browser, page, artifacts, name, log }, body) {
  let failure = null;
  try {
    await body();
  } catch (error) {
    failure = error;
  }
  mkdirSync(artifacts, { recursive: true });
  const screenshot = resolve(artifacts, `${name}.png`);
  await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => log(`no screenshot: ${e}`));
  log(`screenshot: ${screenshot}`);
  await browser.close();
  return failure;
}
