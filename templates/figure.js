// One Plotly figure, drawn in a frame of its own (`/sandbox/figure`, loaded by the sandbox page
// in an <iframe sandbox="allow-scripts">), so that a figure plotly.js cannot finish drawing is
// stopped with its frame: the page removes the frame at the run's time limit or on Stop. With
// Document-Isolation-Policy on this document, Chromium runs the frame in a process of its own,
// so a figure that freezes plotly.js does not freeze the page.
//
// Messages in, from the parent page only, once: {type: 'figure', json} (the figure as Plotly
// JSON text, parsed here, never pasted into HTML). Messages out, to the parent:
//   {type: 'figure-drawn', height}, {type: 'figure-size', height} (after a redraw) or
//   {type: 'figure-error', message}. The page trusts them for their data only.
'use strict';

(() => {
  const div = document.getElementById('figure');
  const CONFIG = { responsive: true, displaylogo: false, showLink: false, showEditInChartStudio: false,
    showSendToCloud: false };
  let received = false;

  const tell = (type, fields) => window.parent.postMessage({ ...fields, type }, '*');
  const height = () => Math.ceil(document.documentElement.getBoundingClientRect().height);

  // plotly.js turns <a href> in titles and annotations into SVG links, and one click on a link
  // with target=_self would take the frame away from the figure. Here links are text: their
  // targets are removed after every redraw, and clicks on any that remain do nothing.
  const XLINK = 'http://www.w3.org/1999/xlink';
  function unlink() {
    for (const a of div.querySelectorAll('a')) {
      a.removeAttributeNS(XLINK, 'href');
      for (const name of ['href', 'xlink:href', 'target', 'onclick']) a.removeAttribute(name);
    }
  }
  for (const type of ['click', 'auxclick']) {
    document.addEventListener(type, (e) => {
      const a = e.target instanceof Element ? e.target.closest('a') : null;
      if (a && (a.hasAttribute('href') || a.hasAttributeNS(XLINK, 'href'))) e.preventDefault();
    }, true);
  }

  async function draw(json) {
    let fig = null;
    try {
      fig = JSON.parse(json);
    } catch (e) {
      fig = null;
    }
    if (!fig || typeof fig !== 'object' || !Array.isArray(fig.data)) {
      tell('figure-error', { message: 'the figure is not Plotly JSON' });
      return;
    }
    if (!window.Plotly) {
      tell('figure-error', { message: 'plotly.js could not be loaded' });
      return;
    }
    const layout = (fig.layout && typeof fig.layout === 'object') ? fig.layout : {};
    try {
      await window.Plotly.newPlot(div, fig.data, layout, CONFIG);
    } catch (e) {
      tell('figure-error', { message: String((e && e.message) || e) });
      return;
    }
    unlink();
    if (typeof div.on === 'function') {
      div.on('plotly_afterplot', () => {
        unlink();
        tell('figure-size', { height: height() });
      });
    }
    tell('figure-drawn', { height: height() });
  }

  window.addEventListener('message', (event) => {
    const m = event.data;
    if (received || event.source !== window.parent || !m || typeof m !== 'object') return;
    if (m.type !== 'figure' || typeof m.json !== 'string') return;
    received = true;
    draw(m.json);
  });
})();
