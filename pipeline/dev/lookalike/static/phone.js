/* The phone page: customers, group members and the owner write; the bot's replies show up. */
(function () {
  'use strict';

  const { el, clock, ticks, initials, colour, debounce } = window.lookalikeUi;
  const $ = (id) => document.getElementById(id);
  let world = null;

  async function control(path, body) {
    const response = await fetch(`/control/${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || response.statusText);
    return data;
  }

  function showError(err) {
    $('phone-error').textContent = err ? err.message || String(err) : '';
  }

  function act(fn) {
    return async (event) => {
      if (event) event.preventDefault();
      try {
        showError(null);
        await fn();
      } catch (err) {
        showError(err);
      }
      refresh();
    };
  }

  function mode() {
    return document.querySelector('input[name="mode"]:checked').value;
  }

  function setMode(value) {
    document.querySelector(`input[name="mode"][value="${value}"]`).checked = true;
    render();
  }

  function currentChat() {
    if (!world) return null;
    const m = mode();
    if (m === 'customer') return $('phone-customer').value || null;
    if (m === 'group') return $('phone-group').value || null;
    return $('phone-owner-chat').value || null;
  }

  /** Replaces a select's options only when they changed, keeping the choice. */
  function fill(select, options) {
    const signature = JSON.stringify(options);
    if (select.dataset.signature !== signature) {
      const keep = select.value;
      select.replaceChildren(...options.map(([value, label]) => el('option', { value }, label)));
      if (options.some(([value]) => value === keep)) select.value = keep;
      select.dataset.signature = signature;
    }
  }

  function render() {
    if (!world) return;
    const m = mode();
    $('customer-fields').hidden = m !== 'customer';
    $('group-fields').hidden = m !== 'group';
    $('owner-fields').hidden = m !== 'owner';
    $('phone-me').textContent = `${world.me_name} (${world.me})`;
    const pill = $('phone-login-state');
    pill.textContent = world.login.replace('_', ' ');
    pill.dataset.state = world.login;
    $('phone-scan').disabled = world.login !== 'qr';

    const groups = world.chats.filter((c) => c.is_group);
    fill($('phone-customer'), world.contacts.map((c) => [c.id, `${c.name} · ${c.id}`]));
    fill($('phone-group'), groups.map((g) => [g.id, g.name]));
    const group = groups.find((g) => g.id === $('phone-group').value);
    fill($('phone-author'), group ? group.participants.map((p) => [p.id, `${p.name} · ${p.id}`]) : []);
    fill($('phone-owner-chat'), world.chats.map((c) => [c.id, `${c.name} · ${c.id}`]));

    const chatId = currentChat();
    $('phone-chats').replaceChildren(
      ...world.chats.map((c) =>
        el(
          'li',
          { class: c.id === chatId ? 'selected' : '', 'data-testid': 'phone-chat-item', 'data-chat-id': c.id, onclick: () => pick(c) },
          el('span', {}, c.is_group ? '# ' : '', c.name, c.unread_count ? ` (${c.unread_count} unread by bot)` : ''),
          el('span', { class: 'muted small' }, c.typing ? 'typing…' : c.last_message ? clock(c.last_message.t) : '')
        )
      )
    );
    renderConversation(chatId);
  }

  function pick(chat) {
    if (mode() === 'owner') {
      $('phone-owner-chat').value = chat.id;
    } else if (chat.is_group) {
      $('phone-group').value = chat.id;
      setMode('group');
    } else {
      $('phone-customer').value = chat.id;
      setMode('customer');
    }
    render();
  }

  function renderConversation(chatId) {
    const chat = world.chats.find((c) => c.id === chatId);
    const contact = world.contacts.find((c) => c.id === chatId);
    const name = chat ? chat.name : contact ? contact.name : chatId || '';
    $('phone-chat-title').textContent = chatId ? `${name} — ${chatId}` : 'No chat';
    $('phone-avatar').textContent = initials(name);
    $('phone-avatar').style.background = colour(chatId || '');
    const typing = Boolean(chat && chat.typing);
    $('phone-typing').textContent = typing ? `${world.me_name} is typing…` : '';
    $('phone-typing').className = `small ${typing ? 'typing' : 'muted'}`;
    $('phone-typing').dataset.typing = typing ? 'true' : 'false';
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const messages = world.messages.filter((m) => m.chat === chatId);
    box.replaceChildren(
      ...messages.map((m) => {
        const who = m.origin === 'bot' ? 'bot' : m.origin === 'owner' ? 'owner (phone)' : m.notify_name;
        return el(
          'div',
          {
            class: `msg ${m.from_me ? 'in' : 'out'}`,
            'data-testid': 'phone-msg',
            'data-id': m.id,
            'data-origin': m.origin,
            'data-ack': m.ack,
          },
          el('div', { class: 'author', style: `color:${colour(m.sender)}` }, who),
          m.quoted ? el('div', { class: 'quote' }, m.quoted.body || m.quoted.type) : null,
          el('div', { class: 'body', 'data-testid': 'phone-msg-body' }, messageText(m)),
          Object.keys(m.reactions || {}).length
            ? el('div', { class: 'reactions small', 'data-testid': 'phone-msg-reactions' }, Object.values(m.reactions).join(' '))
            : null,
          el(
            'div',
            { class: 'meta' },
            m.edited ? el('span', { class: 'muted', 'data-testid': 'phone-msg-edited' }, 'edited ') : null,
            clock(m.t),
            ' ',
            m.from_me ? ticks(m.ack) : ticks(m.read_by_page ? 3 : 2),
            ...messageActions(m)
          )
        );
      })
    );
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function messageText(m) {
    if (m.type === 'revoked') return '🚫 This message was deleted';
    if (m.type === 'ciphertext') return '(waiting for this message…)';
    if (m.is_media) return `[${m.type}]${m.caption ? ' ' + m.caption : ''}`;
    return m.body;
  }

  /** Who acts on a message from this side: the customer, the chosen group author, the owner. */
  function actor() {
    const m = mode();
    if (m === 'owner') return world.me;
    if (m === 'group') return $('phone-author').value || null;
    return $('phone-customer').value || null;
  }

  /** Edit and delete (what this side wrote), react 👍 (toggles), as WhatsApp's message menu. */
  function messageActions(m) {
    if (m.type === 'revoked') return [];
    const mine = m.origin === 'owner' ? mode() === 'owner' : m.origin === 'customer' && m.sender === actor();
    const who = actor();
    const reacted = who && m.reactions && m.reactions[who] === '👍';
    const button = (testid, title, text, fn) =>
      el('button', { class: 'msg-action', 'data-testid': testid, title, onclick: act(fn) }, text);
    const actions = [];
    if (mine && m.type === 'chat') {
      actions.push(
        button('phone-msg-edit', 'Edit', '✎', async () => {
          const body = window.prompt('Edit message', m.body);
          if (body !== null && body.trim() && body !== m.body) await control('edit', { id: m.id, body });
        })
      );
    }
    if (mine) {
      actions.push(button('phone-msg-delete', 'Delete for everyone', '🗑', () => control('revoke', { id: m.id })));
    }
    actions.push(
      button('phone-msg-react', reacted ? 'Take the reaction back' : 'React 👍', reacted ? '👍✕' : '👍', () =>
        control('react', { id: m.id, reaction: reacted ? '' : '👍', sender: who || undefined })
      )
    );
    return actions;
  }

  async function refresh() {
    try {
      world = await control('state');
      render();
    } catch (err) {
      showError(err);
    }
  }

  const send = act(async () => {
    const chat = currentChat();
    let body = $('phone-body').value;
    if (!chat) throw new Error('pick a chat first');
    if (!body.trim()) return;
    const m = mode();
    if (m === 'owner') {
      await control('owner', { chat, body });
    } else if (m === 'group') {
      const mentions = [];
      if ($('phone-mention-bot').checked) {
        const tag = `@${world.me.split('@')[0]}`;
        if (!body.includes(tag)) body = `${tag} ${body}`;
        mentions.push(world.me);
      }
      await control('message', { chat, body, author: $('phone-author').value || undefined, mentions });
    } else {
      await control('message', { chat, body });
    }
    $('phone-body').value = '';
  });

  $('phone-send').addEventListener('click', send);
  $('phone-body').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) send(event);
  });
  $('phone-read').addEventListener('click', act(async () => {
    const chat = currentChat();
    if (chat) await control('read', { chat });
  }));
  $('phone-scan').addEventListener('click', act(() => control('scan', {})));
  $('phone-conflict').addEventListener('click', act(() => control('conflict', {})));
  $('phone-logout').addEventListener('click', act(() => control('logout', {})));
  $('phone-reset').addEventListener('click', act(() => control('reset', {})));
  $('phone-add-customer').addEventListener('click', act(async () => {
    const digits = $('phone-new-number').value.replace(/\D/g, '');
    if (!digits) throw new Error('type a number');
    const contact = await control('contact', { id: `${digits}@c.us`, name: $('phone-new-name').value || undefined });
    await refresh();
    $('phone-customer').value = contact.id;
    $('phone-new-number').value = '';
    $('phone-new-name').value = '';
  }));
  $('phone-add-group').addEventListener('click', act(async () => {
    const chat = await control('group', {
      name: $('phone-new-group-name').value || 'New group',
      participants: world.contacts.map((c) => c.id),
    });
    await refresh();
    $('phone-group').value = chat.id;
    $('phone-new-group-name').value = '';
  }));
  for (const id of ['phone-customer', 'phone-group', 'phone-owner-chat']) $(id).addEventListener('change', render);
  for (const input of document.querySelectorAll('input[name="mode"]')) input.addEventListener('change', render);

  const changed = debounce(refresh, 30);
  function listen() {
    const source = new EventSource('/control/events');
    source.addEventListener('changed', changed);
    source.onerror = () => {
      source.close();
      setTimeout(listen, 1000);
    };
  }
  listen();
  refresh();
})();
