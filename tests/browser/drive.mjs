// Drives headless Chromium (Debian's /usr/bin/chromium through playwright-core) through the cases
// that tests/it/browser/sandbox.rs describes, and reports what it observed as JSON. It asserts
// nothing itself: the Rust test does, so that every failure names the case and the observation.
//
//   node drive.mjs cases.json > observations.json
//
// cases.json: {"cases": [{"name", "steps": [...]}]}. Steps:
//   {"do": "goto", "url"}                      open a URL in the case's page
//   {"do": "wait", "states": [...], "timeoutMs", "frame"?}   wait until body.dataset.state is one of them
//   {"do": "observe", "label", "frame"?}       record the outputs, state history and element counts
//   {"do": "probe", "label", "frame"?}         time a round trip into the page and a click on Edit
//   {"do": "tab", "label", "count"}            press Tab `count` times, record what gets focus
//   {"do": "click", "selector", "frame"?, "force"?}  click an element
//   {"do": "fill", "selector", "value", "frame"?}  type into a field
//   {"do": "screenshot", "path"}               write a PNG of the page
//   {"do": "sleep", "ms"}                      wait
//   {"do": "fetch", "url", "label"}            GET a URL from Node (a test server's counter), record the text
//   {"do": "eval", "label", "js", "frame"?}    evaluate a JavaScript expression in the page, record its value
//   {"do": "until", "js", "timeoutMs", "frame"?}  wait until a JavaScript expression is truthy
// "frame": true means the sandbox page inside the first iframe (the widget case); "figure": N
// (click, eval) the Nth Plotly figure frame of that page.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// Records every data-state change with its time, and every Content-Security-Policy violation
// (markup from the code that became elements would trigger one), in every frame, before any page
// script runs.
const STATE_RECORDER = () => {
  window.__sgStates = [];
  window.__sgViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__sgViolations.push({ directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile, line: e.lineNumber });
  });
  const seen = () => {
    const s = document.body && document.body.dataset.state;
    const last = window.__sgStates[window.__sgStates.length - 1];
    if (s && (!last || last[0] !== s)) window.__sgStates.push([s, performance.now()]);
  };
  new MutationObserver(seen).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  document.addEventListener('DOMContentLoaded', seen);
};

const isFigure = (f) => /\/sandbox\/figure$/.test(f.url());

function sandboxFrame(page, step) {
  if (!step.frame) return page.mainFrame();
  const frame = page.frames().find((f) => f !== page.mainFrame() && f.url().includes('/sandbox#'));
  if (!frame) throw new Error('no sandbox iframe in the page');
  return frame;
}

function target(page, step) {
  const frame = sandboxFrame(page, step);
  if (step.figure === undefined) return frame;
  const figure = frame.childFrames().filter(isFigure)[step.figure];
  if (!figure) throw new Error('no figure frame ' + step.figure);
  return figure;
}

// What the Plotly figure frames of the sandbox page show, summed up.
async function observeFigures(frame) {
  const out = { plotlyFigures: 0, plotlyBars: 0, plotlyTickLabels: [], figureLinks: 0, figureAnchors: 0 };
  for (const f of frame.childFrames().filter(isFigure)) {
    let seen = null;
    try {
      seen = await f.evaluate(() => ({
        drawn: !!document.querySelector('.plotly-figure .main-svg'),
        bars: document.querySelectorAll('.plotly-figure .bars .point path').length,
        ticks: [...document.querySelectorAll('.plotly-figure .xtick text')].map((t) => t.textContent),
        links: [...document.querySelectorAll('a')].filter((a) => a.hasAttribute('href') || a.hasAttributeNS('http://www.w3.org/1999/xlink', 'href')).length,
        anchors: document.querySelectorAll('.plotly-figure a').length,
      }));
    } catch (e) { continue; /* A frame removed meanwhile. */ }
    if (seen.drawn) out.plotlyFigures += 1;
    out.plotlyBars += seen.bars;
    out.plotlyTickLabels.push(...seen.ticks);
    out.figureLinks += seen.links;
    out.figureAnchors += seen.anchors;
  }
  return out;
}

async function observe(frame) {
  const figures = await observeFigures(frame);
  const seen = await frame.evaluate(() => {
    const text = (id) => { const el = document.getElementById(id); return el ? el.textContent : null; };
    const figures = document.getElementById('figures');
    const outputs = ['stdout', 'stderr', 'result'].map((id) => document.getElementById(id));
    return {
      state: document.body.dataset.state,
      worker: document.body.dataset.worker || null,
      // What the page made of the link (signed, unsigned, invalid) and the note it showed, if any.
      link: document.body.dataset.link || null,
      linkNote: (() => { const n = document.getElementById('link-note'); return n && !n.hidden ? n.textContent : null; })(),
      origin: self.origin,
      status: text('status'),
      stdout: text('stdout'),
      stderr: text('stderr'),
      result: text('result'),
      code: document.getElementById('code') ? document.getElementById('code').value : null,
      states: window.__sgStates || [],
      pngs: figures ? [...figures.querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0).map((i) => [i.naturalWidth, i.naturalHeight]) : [],
      figureFrames: figures ? figures.querySelectorAll('iframe.plotly-figure').length : 0,
      title: document.title,
      violations: window.__sgViolations || [],
      // The canary the hostile payloads try to set.
      canary: typeof window.__sgPwned === 'undefined' ? null : String(window.__sgPwned),
      // Each value in #result, in order, and every element and attribute under it.
      results: [...document.getElementById('result').children].map((el) => [el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''), el.textContent]),
      resultTags: [...new Set([...document.querySelectorAll('#result *')].map((el) => el.tagName.toLowerCase()))].sort(),
      resultAttributes: [...new Set([...document.querySelectorAll('#result *')].flatMap((el) => [...el.attributes].map((a) => a.name)))].sort(),
      resultHtml: (() => {
        const h = document.querySelector('#result .html-result');
        return h ? { text: h.textContent, tables: h.querySelectorAll('table').length, bold: h.querySelectorAll('b').length } : null;
      })(),
      activeElementsInOutputs: outputs.reduce((n, el) => n + (el ? el.querySelectorAll('script, img, iframe, object, embed, a').length : 0), 0),
      scriptsInDocument: document.querySelectorAll('script').length,
      overflowsX: document.documentElement.scrollWidth > window.innerWidth,
      now: performance.now(),
    };
  });
  return { ...seen, ...figures };
}

async function runCase(browser, c) {
  const context = await browser.newContext({ viewport: c.viewport || { width: 1000, height: 800 }, colorScheme: c.colorScheme || 'light' });
  await context.addInitScript(STATE_RECORDER);
  const page = await context.newPage();
  const events = { dialogs: [], navigations: [], console: [], pageErrors: [], requests: [] };
  page.on('dialog', (d) => { events.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  // A figure frame loading its own document is not a navigation of interest; anything else is.
  page.on('framenavigated', (f) => {
    if (!isFigure(f)) events.navigations.push({ main: f === page.mainFrame(), url: f.url() });
  });
  page.on('console', (m) => events.console.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => events.pageErrors.push(String(e)));
  page.on('popup', (p) => events.navigations.push({ popup: true, url: p.url() }));
  const out = { name: c.name, observations: {}, probes: {}, fetches: {}, evals: {}, events, error: null };
  try {
    for (const step of c.steps) {
      switch (step.do) {
        case 'goto':
          await page.goto(step.url, { waitUntil: 'load' });
          break;
        case 'wait': {
          const deadline = Date.now() + (step.timeoutMs || 60000);
          for (;;) {
            let state = null;
            try {
              state = await target(page, step).evaluate(() => document.body && document.body.dataset.state);
            } catch (e) { /* The frame may not exist yet. */ }
            if (step.states.includes(state)) break;
            if (Date.now() > deadline) throw new Error(`state ${state} after ${step.timeoutMs} ms, waiting for ${step.states}`);
            await new Promise((r) => setTimeout(r, 50));
          }
          break;
        }
        case 'observe':
          out.observations[step.label] = await observe(target(page, step));
          break;
        case 'probe': {
          const frame = target(page, step);
          const t0 = Date.now();
          await frame.evaluate(() => 1);
          const evalMs = Date.now() - t0;
          const t1 = Date.now();
          await frame.click('#edit', { timeout: 5000 });
          const pressed = await frame.evaluate(() => document.getElementById('edit').getAttribute('aria-pressed'));
          const clickMs = Date.now() - t1;
          await frame.click('#edit', { timeout: 5000 });
          const state = await frame.evaluate(() => document.body.dataset.state);
          out.probes[step.label] = { evalMs, clickMs, pressed, state };
          break;
        }
        case 'tab': {
          // Which controls Tab reaches, in order, from the top of the page.
          const order = [];
          await page.mainFrame().evaluate(() => document.activeElement && document.activeElement.blur());
          for (let i = 0; i < step.count; i++) {
            await page.keyboard.press('Tab');
            order.push(await page.mainFrame().evaluate(() => document.activeElement ? document.activeElement.id || document.activeElement.tagName : null));
          }
          out.probes[step.label] = { order };
          break;
        }
        case 'click':
          await target(page, step).click(step.selector, { timeout: 5000, force: !!step.force });
          break;
        case 'sleep':
          await new Promise((r) => setTimeout(r, step.ms));
          break;
        case 'fetch': {
          const r = await fetch(step.url);
          out.fetches[step.label] = await r.text();
          break;
        }
        case 'eval':
          out.evals[step.label] = await target(page, step).evaluate(step.js);
          break;
        case 'until': {
          const deadline = Date.now() + (step.timeoutMs || 60000);
          for (;;) {
            let ok = false;
            try {
              ok = await target(page, step).evaluate(step.js);
            } catch (e) { /* The frame may not exist yet. */ }
            if (ok) break;
            if (Date.now() > deadline) throw new Error(`not true after ${step.timeoutMs} ms: ${step.js}`);
            await new Promise((r) => setTimeout(r, 50));
          }
          break;
        }
        case 'fill':
          await target(page, step).fill(step.selector, step.value, { timeout: 5000 });
          break;
        case 'screenshot':
          await page.screenshot({ path: step.path, fullPage: true });
          break;
        default:
          throw new Error('unknown step ' + step.do);
      }
    }
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e);
    try { out.observations.__at_error = await observe(page.mainFrame()); } catch (e2) { /* ignore */ }
  }
  await context.close();
  return out;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const results = [];
for (const c of input.cases) {
  if (process.env.ONLY && !c.name.includes(process.env.ONLY)) continue;
  results.push(await runCase(browser, c));
}
await browser.close();
process.stdout.write(JSON.stringify({ results }, null, 1));
