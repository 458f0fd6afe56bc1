/* Small helpers shared by the bot page and the phone page. */
(function () {
  'use strict';

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }

  /** WhatsApp's ticks: clock (0), ✓ (1), ✓✓ (2), blue ✓✓ (3+), ! (failed). */
  function ticks(ack) {
    if (ack < 0) return el('span', { class: 'ticks failed', title: 'failed', 'data-ack': ack }, '!');
    if (ack === 0) return el('span', { class: 'ticks pending', title: 'pending', 'data-ack': ack }, '◷');
    const read = ack >= 3;
    return el(
      'span',
      { class: `ticks${read ? ' read' : ''}`, title: ['', 'sent', 'delivered', 'read', 'played'][Math.min(ack, 4)], 'data-ack': ack },
      ack === 1 ? '✓' : '✓✓'
    );
  }

  function initials(name) {
    const clean = String(name || '?').replace(/^\+/, '');
    return clean.slice(0, 1).toUpperCase();
  }

  const palette = ['#25d366', '#34b7f1', '#f15c6d', '#ffbc38', '#a66cff', '#02a698', '#ff8a4c'];
  function colour(id) {
    let h = 0;
    for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return palette[h % palette.length];
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        fn(...args);
      }, ms);
    };
  }

  window.lookalikeUi = { el, clock, ticks, initials, colour, debounce };
})();
