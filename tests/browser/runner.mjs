// Opens a page in headless Chromium (Debian's /usr/bin/chromium through playwright-core) and waits
// until the page's own script sets window.__sgDone, then reports window.__sgReport with what the
// browser saw (console, page errors, every request) as JSON. It asserts nothing: the Rust test
// (tests/it/browser/runner.rs, tests/it/browser/playground_tools.rs) does.
//
//   node runner.mjs <url> [timeout-ms] [screenshot-path] > observation.json
import { chromium } from 'playwright-core';

const [url, timeout, shot] = process.argv.slice(2);
const limitMs = Number(timeout || 240000);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
const page = await context.newPage();
const out = { report: null, error: null, console: [], pageErrors: [], requests: [], dialogs: [] };
context.on('request', (r) => out.requests.push(r.url()));
page.on('console', (m) => out.console.push(m.type() + ': ' + m.text()));
page.on('pageerror', (e) => out.pageErrors.push(String(e)));
page.on('dialog', (d) => { out.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
let exit = 0;
try {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__sgDone === true, null, { timeout: limitMs, polling: 100 });
  out.report = await page.evaluate(() => window.__sgReport);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  try { out.report = await page.evaluate(() => window.__sgReport); } catch (e2) { /* the page is gone */ }
  exit = 1;
}
await browser.close();
process.stdout.write(JSON.stringify(out, null, 1));
process.exit(exit);
