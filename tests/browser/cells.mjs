// Drives headless Chromium (Debian's /usr/bin/chromium through playwright-core) through the cases
// that tests/it/browser/cells.rs describes: earlier cells, the Input box and interactive input(),
// files in and out. It reports what it observed as JSON and asserts nothing itself: the Rust test
// does.
//
//   node cells.mjs cases.json > observations.json
//
// cases.json: {"cases": [{"name", "steps": [...]}]}. Steps:
//   {"do": "goto", "url"}                           open a URL
//   {"do": "wait", "states": [...], "timeoutMs"}    wait until body.dataset.state is one of them
//   {"do": "waitFor", "selector", "timeoutMs"}      wait until an element is visible
//   {"do": "observe", "label"}                      record state, outputs, cells, files
//   {"do": "click", "selector"}                     click an element
//   {"do": "fill", "selector", "value"}             set a field's text
//   {"do": "enter", "selector", "value"}            type a line into a field and press Enter
//   {"do": "press", "selector", "key"}              press a key in a field
//   {"do": "setFiles", "selector", "files": [{name, text} | {name, bytes}]}   choose files
//   {"do": "drop", "files": [{name, text} | {name, bytes}]}  drop files on the page
//   {"do": "download", "selector", "label"}         click a link, record the download's name and text
//   {"do": "sleep", "ms"}                           wait
//   {"do": "screenshot", "path"}                    write a PNG of the page
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// Records every data-state change with its time, before any page script runs.
const STATE_RECORDER = () => {
  window.__sgStates = [];
  const seen = () => {
    const s = document.body && document.body.dataset.state;
    const last = window.__sgStates[window.__sgStates.length - 1];
    if (s && (!last || last[0] !== s)) window.__sgStates.push([s, performance.now()]);
  };
  new MutationObserver(seen).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  document.addEventListener('DOMContentLoaded', seen);
};

async function observe(page) {
  return page.evaluate(() => {
    const text = (id) => { const el = document.getElementById(id); return el ? el.textContent : null; };
    const hidden = (id) => { const el = document.getElementById(id); return el ? el.hidden : null; };
    const part = (cell, name) => { const el = cell.querySelector('.cell-' + name); return el ? el.textContent : null; };
    return {
      state: document.body.dataset.state,
      input: document.body.dataset.input || null,
      interactiveInput: document.body.dataset.interactiveInput || null,
      status: text('status'),
      stdout: text('stdout'),
      stderr: text('stderr'),
      result: text('result'),
      code: document.getElementById('code').value,
      states: window.__sgStates || [],
      cellsHidden: hidden('cells-section'),
      cellsNote: text('cells-note'),
      cellsNoteHidden: hidden('cells-note'),
      runAloneHidden: hidden('run-alone'),
      cells: [...document.querySelectorAll('#cells .cell')].map((c) => ({
        id: c.id,
        state: c.dataset.state,
        status: part(c, 'status'),
        code: part(c, 'code'),
        stdout: part(c, 'stdout'),
        stderr: part(c, 'stderr'),
        result: part(c, 'result'),
        open: c.querySelector('details').open,
      })),
      inputField: (() => {
        const f = document.getElementById('input');
        return f ? { inStdout: !!f.closest('#stdout, .cell-stdout'), label: f.getAttribute('aria-label') } : null;
      })(),
      stdin: document.getElementById('stdin').value,
      stdinNote: text('stdin-note'),
      filesList: [...document.querySelectorAll('#files-list li')].map((li) => li.textContent),
      filesNote: text('files-note'),
      outputsHidden: hidden('outputs-section'),
      outputs: [...document.querySelectorAll('#outputs li')].map((li) => {
        const a = li.querySelector('a');
        const img = li.querySelector('img');
        return {
          text: li.textContent,
          download: a ? a.getAttribute('download') : null,
          href: a ? a.href.split(':')[0] : null,
          preview: img ? { loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth } : null,
        };
      }),
      now: performance.now(),
    };
  });
}

function fileSpec(f) {
  const buffer = f.bytes !== undefined ? Buffer.alloc(f.bytes, 0x61) : Buffer.from(f.text, 'utf8');
  return { name: f.name, mimeType: f.mimeType || 'application/octet-stream', buffer };
}

async function runCase(browser, c) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 }, acceptDownloads: true });
  await context.addInitScript(STATE_RECORDER);
  const page = await context.newPage();
  const events = { console: [], pageErrors: [], dialogs: [] };
  page.on('console', (m) => events.console.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => events.pageErrors.push(String(e)));
  page.on('dialog', (d) => { events.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  const out = { name: c.name, observations: {}, downloads: {}, events, error: null };
  try {
    for (const step of c.steps) {
      switch (step.do) {
        case 'goto':
          await page.goto(step.url, { waitUntil: 'load' });
          break;
        case 'wait': {
          const deadline = Date.now() + (step.timeoutMs || 60000);
          for (;;) {
            const state = await page.evaluate(() => document.body && document.body.dataset.state);
            if (step.states.includes(state)) break;
            if (Date.now() > deadline) throw new Error(`state ${state} after ${step.timeoutMs} ms, waiting for ${step.states}`);
            await new Promise((r) => setTimeout(r, 50));
          }
          break;
        }
        case 'waitFor':
          await page.waitForSelector(step.selector, { state: 'visible', timeout: step.timeoutMs || 60000 });
          break;
        case 'observe':
          out.observations[step.label] = await observe(page);
          break;
        case 'click':
          await page.click(step.selector, { timeout: 5000 });
          break;
        case 'fill':
          await page.fill(step.selector, step.value, { timeout: 5000 });
          break;
        case 'enter':
          await page.fill(step.selector, step.value, { timeout: 5000 });
          await page.press(step.selector, 'Enter', { timeout: 5000 });
          break;
        case 'press':
          await page.press(step.selector, step.key, { timeout: 5000 });
          break;
        case 'setFiles':
          await page.setInputFiles(step.selector, step.files.map(fileSpec), { timeout: 5000 });
          break;
        case 'drop':
          await page.evaluate((files) => {
            const dt = new DataTransfer();
            for (const f of files) {
              const data = f.bytes !== undefined ? new Uint8Array(f.bytes).fill(0x61) : f.text;
              dt.items.add(new File([data], f.name, { type: 'text/plain' }));
            }
            document.body.dispatchEvent(new DragEvent('dragover', { bubbles: true, cancelable: true, dataTransfer: dt }));
            document.body.dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt }));
          }, step.files);
          break;
        case 'download': {
          const [download] = await Promise.all([
            page.waitForEvent('download', { timeout: 10000 }),
            page.click(step.selector, { timeout: 5000 }),
          ]);
          const failure = await download.failure();
          const path = failure ? null : await download.path();
          out.downloads[step.label] = {
            name: download.suggestedFilename(),
            failure,
            text: path ? readFileSync(path, 'utf8') : null,
          };
          break;
        }
        case 'sleep':
          await new Promise((r) => setTimeout(r, step.ms));
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
    try { out.observations.__at_error = await observe(page); } catch (e2) { /* ignore */ }
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
