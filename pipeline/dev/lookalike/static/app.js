/* The bot page's UI: what a human sees of the look-alike WhatsApp Web. Reads the WPP mirror. */
(function () {
  'use strict';

  const core = window.__lookalike;
  const { el, clock, ticks, initials, colour, debounce } = window.lookalikeUi;
  const $ = (id) => document.getElementById(id);
  let selected = null;
  let lastQrRef = null;

  function screen() {
    const s = core.state;
    if (s.mode === 'qr') return 'qr';
    if (s.mode === 'conflict') return 'conflict';
    if (s.mode === 'logged_out') return 'logged_out';
    if (s.mode === 'main') return 'main';
    return 'loading';
  }

  function render() {
    const name = screen();
    $('app').dataset.screen = name;
    for (const section of document.querySelectorAll('.screen')) {
      section.hidden = section.id !== `screen-${name.replace('_', '-')}`;
    }
    if (name === 'loading') {
      $('loading-text').textContent = core.state.mode === 'syncing' ? 'Loading your chats…' : 'Connecting…';
    }
    if (name === 'qr') renderQr();
    if (name === 'logged_out') $('logged-out-reason').textContent = core.state.logoutReason || '';
    if (name === 'main') renderMain();
  }

  function renderQr() {
    const code = core.state.authCode;
    const box = $('qr-code');
    box.textContent = code ? code.fullCode : '';
    box.dataset.ref = code ? code.ref : '';
    if (code && code.ref !== lastQrRef) {
      lastQrRef = code.ref;
      $('qr-image').src = `/qr.svg?ref=${encodeURIComponent(code.ref.slice(2, 14))}`;
    }
  }

  function renderMain() {
    const me = core.state.me;
    $('me-name').textContent = core.state.meName;
    $('me-id').textContent = me ? me._serialized : '';
    $('me-avatar').textContent = initials(core.state.meName);
    $('online-dot').className = `dot${core.state.online ? ' on' : ''}`;
    const list = $('chat-list');
    list.replaceChildren(
      ...core.chats().map((chat) => {
        const id = chat.id._serialized;
        const raw = core.rawMessages(id);
        const last = raw.length ? raw[raw.length - 1] : null;
        const preview = last ? previewOf(last) : chat.isGroup ? 'Group created' : '';
        return el(
          'li',
          {
            class: `chat-item${id === selected ? ' selected' : ''}`,
            'data-chat-id': id,
            'data-testid': 'chat-item',
            onclick: () => select(id),
          },
          el('div', { class: 'avatar', style: `background:${colour(id)}` }, initials(chat.formattedTitle)),
          el(
            'div',
            { class: 'chat-text' },
            el('div', { class: 'row' }, el('span', { class: 'chat-name' }, chat.formattedTitle), el('span', { class: 'muted small' }, chat.t ? clock(chat.t) : '')),
            el(
              'div',
              { class: 'row' },
              el('span', { class: 'preview muted' }, last && last.from_me ? ticks(last.ack) : null, ' ', preview),
              chat.unreadCount > 0 ? el('span', { class: 'badge', 'data-testid': 'unread-badge' }, chat.unreadCount) : null
            )
          )
        );
      })
    );
    renderConversation();
  }

  function previewOf(m) {
    if (m.type === 'ciphertext') return 'Waiting for this message…';
    if (m.is_media) return `[${m.type}]${m.caption ? ' ' + m.caption : ''}`;
    return m.body;
  }

  function renderConversation() {
    const chat = selected ? core.chats().find((c) => c.id._serialized === selected) : null;
    $('no-chat').hidden = Boolean(chat);
    $('conv-header').hidden = !chat;
    $('composer').hidden = !chat;
    $('messages').hidden = !chat;
    if (!chat) return;
    $('conv-name').textContent = chat.formattedTitle;
    $('conv-avatar').textContent = initials(chat.formattedTitle);
    $('conv-avatar').style.background = colour(selected);
    $('conv-sub').textContent = chat.isGroup
      ? chat.groupMetadata.participants.map((p) => p.id.user).join(', ')
      : chat.id._serialized;
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren(
      ...core.rawMessages(selected).map((m) =>
        el(
          'div',
          { class: `msg ${m.from_me ? 'out' : 'in'}`, 'data-testid': 'message', 'data-id': m.id, 'data-ack': m.ack },
          !m.from_me && chat.isGroup ? el('div', { class: 'author', style: `color:${colour(m.sender)}` }, m.notify_name) : null,
          m.quoted ? el('div', { class: 'quote' }, m.quoted.body || m.quoted.type) : null,
          el('div', { class: 'body' }, previewOf(m)),
          el('div', { class: 'meta' }, m.origin === 'owner' ? el('span', { class: 'via', title: 'sent from the phone' }, 'phone ·') : null, clock(m.t), ' ', m.from_me ? ticks(m.ack) : null)
        )
      )
    );
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  async function select(id) {
    selected = id;
    render();
    await core.loadMessages(id).catch(() => null);
    const chat = window.WPP.chat.get(id);
    if (chat && chat.unreadCount > 0) await window.WPP.chat.markIsRead(id).catch(() => null);
    const box = $('messages');
    render();
    box.scrollTop = box.scrollHeight;
  }

  $('composer').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('composer-input');
    const text = input.value.trim();
    if (!text || !selected) return;
    input.value = '';
    await window.WPP.chat.sendTextMessage(selected, text).catch((err) => alert(err.message));
  });

  $('use-here').addEventListener('click', () => core.takeover().catch((err) => alert(err.message)));

  window.WPP.on('conn.logout_reason', (reason) => {
    core.state.logoutReason = `Reason: ${reason}`;
  });

  const repaint = debounce(render, 16);
  core.ui.on('change', (what) => {
    if (what === 'reset') selected = null;
    repaint();
  });
  render();
})();
