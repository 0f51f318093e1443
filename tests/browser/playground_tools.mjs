// Drives the sandgate playground's agentic loop in headless Chromium (Debian's /usr/bin/chromium
// through playwright-core) and reports what it saw as JSON:
//
//   node playground_tools.mjs <base-url> <prompt> [screenshot-dir] > observation.json
//
// It opens <base-url>/, turns "Let the model run code" on, sends the prompt and waits for the loop
// to end (the model calls python, the code runs in the page's runner, the result goes back, the
// model answers); then New chat, the switch off, the same prompt again. Every chat request the
// page sends is recorded (its x-sandgate-tools header and JSON body). It asserts nothing itself
// except that each step happens in time; the Rust test (tests/it/browser/playground_tools.rs)
// checks.
import { chromium } from 'playwright-core';

const [base, prompt, shots] = process.argv.slice(2);
const LOOP_MS = Number(process.env.PLAYGROUND_LOOP_MS || 180000);

const RECORDER = () => {
  window.__sg = { states: [], cspViolations: [] };
  new MutationObserver(() => {
    const s = document.body && document.body.dataset.state;
    const last = window.__sg.states[window.__sg.states.length - 1];
    if (s && s !== last) window.__sg.states.push(s);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__sg.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1000, height: 1000 } });
await context.addInitScript(RECORDER);
const page = await context.newPage();
const out = {
  error: null, withTools: null, withoutTools: null, chats: [], requests: [], pageErrors: [],
  console: [], dialogs: [],
};
context.on('request', (r) => {
  out.requests.push(r.url());
  if (r.url().endsWith('/v1/chat/completions') && r.method() === 'POST') {
    let body = null;
    try { body = r.postDataJSON(); } catch (_) { body = r.postData(); }
    out.chats.push({ tools: r.headers()['x-sandgate-tools'] || null, body });
  }
});
page.on('pageerror', (e) => out.pageErrors.push(String(e)));
page.on('console', (m) => out.console.push(`${m.type()}: ${m.text()}`));
page.on('dialog', (d) => { out.dialogs.push(d.message()); d.dismiss().catch(() => {}); });

async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ask(text) {
  await page.click('#prompt');
  await page.keyboard.type(text, { delay: 2 });
  await page.keyboard.press('Enter');
  await until('the state to leave idle', 10000, () => page.evaluate(() => document.body.dataset.state !== 'idle'));
  const t0 = Date.now();
  await until('the loop to end', LOOP_MS, () =>
    page.evaluate(() => ['done', 'error', 'stopped'].includes(document.body.dataset.state)));
  const ms = Date.now() - t0;
  return page.evaluate((loopMs) => {
    const turns = [...document.querySelectorAll('#log > article')];
    const answers = turns.filter((t) => t.matches('.assistant'));
    const last = answers[answers.length - 1];
    return {
      loopMs,
      state: document.body.dataset.state,
      states: window.__sg.states.slice(),
      status: document.getElementById('status').textContent,
      cspViolations: window.__sg.cspViolations.slice(),
      turns: turns.map((t) => t.className),
      tools: turns.filter((t) => t.matches('.tool')).map((t) => ({
        code: t.querySelector('pre.code').textContent,
        output: t.querySelector('pre.output').textContent,
        stdout: [...t.querySelectorAll('pre.output .stdout')].map((s) => s.textContent).join(''),
        status: t.dataset.status || null,
        runStatus: t.querySelector('.run-status').textContent,
        figures: t.querySelectorAll('.values img').length,
      })),
      answer: last ? last.querySelector('.markdown').textContent : null,
      pythonBlocks: last ? last.querySelectorAll('pre > code.language-python').length : 0,
      errors: [...document.querySelectorAll('.error')].map((e) => e.textContent),
      frames: [...document.querySelectorAll('iframe')].map((f) => ({ src: f.src, sandbox: f.getAttribute('sandbox') })),
    };
  }, ms);
}

let exit = 0;
try {
  await page.goto(new URL('/', base).href, { waitUntil: 'load' });
  out.switchLabel = await page.evaluate(() => document.querySelector('label[for="tools"]').textContent.trim());
  await page.check('#tools');
  out.withTools = await ask(prompt);
  if (shots) await page.screenshot({ path: `${shots}/playground-tools.png`, fullPage: true });
  await page.click('#reset');
  await page.uncheck('#tools');
  out.withoutTools = await ask(prompt);
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  exit = 1;
}
await browser.close();
process.stdout.write(JSON.stringify(out, null, 1));
process.exit(exit);
