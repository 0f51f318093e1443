// Drives the sandgate playground in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core from this directory's node_modules) and reports what it saw as JSON:
//
//   node playground.mjs <base-url> <prompt> [screenshot-dir] > observation.json
//
// It opens <base-url>/, types the prompt, sends it, watches the answer stream in as rendered
// markdown, waits for a "Run in sandbox" link, clicks it, and follows the sandbox page that opens in
// a new tab until its body's data-state is done, error or timeout. It asserts nothing itself except
// that each step happens in time (a step that never happens is reported in `error` and the exit
// status is 1); the Rust test checks the observation, so every failure names what was seen.
import { chromium } from 'playwright-core';

const [base, prompt, shots] = process.argv.slice(2);
if (!base || !prompt) {
  process.stderr.write('usage: node playground.mjs <base-url> <prompt> [screenshot-dir]\n');
  process.exit(2);
}
const ANSWER_MS = Number(process.env.PLAYGROUND_ANSWER_MS || 30000);
const SANDBOX_MS = Number(process.env.PLAYGROUND_SANDBOX_MS || 120000);

// Before any page script: record the playground's states, and each change of the answer's HTML.
const RECORDER = () => {
  window.__sg = { states: [], renders: [], renderTimes: [], cspViolations: [] };
  const seenState = () => {
    const s = document.body && document.body.dataset.state;
    const last = window.__sg.states[window.__sg.states.length - 1];
    if (s && s !== last) window.__sg.states.push(s);
  };
  new MutationObserver((records) => {
    seenState();
    for (const r of records) {
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const md = el && el.closest && el.closest('.turn.assistant .markdown');
      if (md) {
        const html = md.innerHTML;
        const renders = window.__sg.renders;
        if (renders[renders.length - 1] !== html) {
          renders.push(html);
          window.__sg.renderTimes.push(performance.now());
        }
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__sg.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
await context.addInitScript(RECORDER);
const page = await context.newPage();
const out = {
  prompt, error: null, playground: null, sandbox: null,
  requests: [], pageErrors: [], console: [], dialogs: [],
};
// Every URL the browser asks for, to show that nothing leaves loopback.
context.on('request', (r) => out.requests.push(r.url()));
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

let exit = 0;
try {
  await page.goto(new URL('/', base).href, { waitUntil: 'load' });
  await page.click('#prompt');
  await page.keyboard.type(prompt, { delay: 5 });
  await page.keyboard.press('Enter');
  await until('the answer to finish', ANSWER_MS, () =>
    page.evaluate(() => ['done', 'error', 'stopped'].includes(document.body.dataset.state)));
  out.playground = await page.evaluate(() => {
    const answer = document.querySelector('.turn.assistant:last-child .markdown');
    const links = answer ? [...answer.querySelectorAll('a')] : [];
    return {
      state: document.body.dataset.state,
      states: window.__sg.states,
      renders: window.__sg.renders.length,
      // The shortest time between two renders, in ms (the page throttles them).
      minRenderGapMs: window.__sg.renderTimes.slice(1).reduce((m, t, i) => Math.min(m, t - window.__sg.renderTimes[i]), Infinity),
      // Renders that already showed some markdown structure before the answer was complete.
      partialRenders: window.__sg.renders.slice(0, -1).filter((h) => /<(p|h\d|ul|ol|pre)>/.test(h)).length,
      cspViolations: window.__sg.cspViolations,
      userTurn: [...document.querySelectorAll('.turn.user .text')].map((el) => el.textContent).pop() || null,
      html: answer ? answer.innerHTML : null,
      text: answer ? answer.textContent : null,
      codeBlocks: answer ? answer.querySelectorAll('pre > code').length : 0,
      pythonBlocks: answer ? answer.querySelectorAll('pre > code.language-python').length : 0,
      scripts: answer ? answer.querySelectorAll('script, iframe, img, object, embed').length : 0,
      links: links.map((a) => ({ text: a.textContent, href: a.href, target: a.target, rel: a.rel })),
      error: (document.querySelector('.turn.assistant:last-child .error') || {}).textContent || null,
    };
  });
  if (shots) await page.screenshot({ path: `${shots}/playground.png`, fullPage: true });

  const run = page.locator('.turn.assistant:last-child .markdown a[href*="/sandbox#py="]').first();
  await run.waitFor({ timeout: 5000 });
  const [popup] = await Promise.all([context.waitForEvent('page', { timeout: 10000 }), run.click()]);
  await popup.waitForLoadState('load');
  await until('the sandbox to finish', SANDBOX_MS, () =>
    popup.evaluate(() => ['done', 'error', 'timeout'].includes(document.body.dataset.state)).catch(() => false));
  // Figures may be drawn a moment after the state changes.
  await popup.waitForTimeout(300);
  out.sandbox = await popup.evaluate(() => {
    const text = (id) => { const el = document.getElementById(id); return el ? el.textContent : null; };
    const figures = document.getElementById('figures');
    return {
      url: location.href,
      state: document.body.dataset.state,
      states: (window.__sg && window.__sg.states) || [],
      code: document.getElementById('code') ? document.getElementById('code').value : null,
      stdout: text('stdout'),
      stderr: text('stderr'),
      result: text('result'),
      pngs: figures ? [...figures.querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0).length : 0,
      plotlyFigures: figures ? [...figures.querySelectorAll('.plotly-figure')].filter((d) => d.querySelector('.main-svg')).length : 0,
      plotlyBars: figures ? figures.querySelectorAll('.plotly-figure .bars .point path').length : 0,
      plotlyTickLabels: figures ? [...figures.querySelectorAll('.plotly-figure .xtick text')].map((t) => t.textContent) : [],
      opener: window.opener === null,
    };
  });
  if (shots) await popup.screenshot({ path: `${shots}/sandbox.png`, fullPage: true });
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  exit = 1;
}
await browser.close();
process.stdout.write(JSON.stringify(out, null, 1));
process.exit(exit);
