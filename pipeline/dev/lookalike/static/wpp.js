/*
 * window.WPP for the WhatsApp Web look-alike.
 *
 * The names, arguments, return values and event payloads follow WA-JS (@wppconnect/wa-js 4.6.0),
 * so a gateway written against WA-JS runs unchanged against this page. The implementation is
 * this project's own: the world lives in the look-alike server, this script mirrors it through
 * Server-Sent Events (GET /events) and calls /api/* for actions.
 *
 * Deliberate WA-JS behaviours kept here (a gateway must cope with them on the real thing too):
 * - WPP.loader.onReady(cb) only fires for listeners registered before the loader is ready:
 *   check WPP.isReady first.
 * - chat.new_message hands over live model objects whose id/from/to/author are Wid and MsgKey
 *   objects, not strings; convert them to plain data inside the page.
 * - messages that arrived while no ready page was open never produce chat.new_message; they are
 *   found through WPP.chat.list() (unreadCount) and WPP.chat.getMessages().
 * - in groups, the keys of chat.msg_ack_change carry the member who acked as participant, so
 *   their _serialized differs from the message's own key; compare id.id.
 * - with keep_message_ids off (POST /control/config), sendTextMessage ignores its messageId
 *   option and assigns its own id, and the echo (chat.new_message) comes before it returns.
 * - chat.msg_edited hands over the original message, already carrying the new body.
 * - a send WhatsApp refuses does not throw: sendTextMessage resolves, its
 *   sendMsgResult.messageSendResult is not 'OK' (WA-JS sendRawMessage.ts), and the message stays
 *   in the chat with ack -1 (getMessages still returns it). Sending to a number that is not on
 *   WhatsApp is not checked either (WPP.contact.queryWidExists answers null for it).
 */
(function () {
  'use strict';

  const WPP_VERSION = '4.6.0-lookalike';
  const WA_VERSION = '2.3000.1038792969-lookalike';
  const SUPPORTED_WHATSAPP_WEB = '>=2.3000.1038792969-alpha';
  const TOKEN_KEY = 'lookalike.session';

  // ---------------------------------------------------------------- errors and event emitter

  class WPPError extends Error {
    constructor(code, message, details) {
      super(message || code);
      this.name = 'WPPError';
      this.code = code;
      if (details) Object.assign(this, details);
    }
  }

  class Emitter {
    constructor() {
      this._listeners = new Map();
      this._any = [];
    }

    _add(name, fn, once) {
      if (typeof fn !== 'function') throw new TypeError('listener must be a function');
      if (!this._listeners.has(name)) this._listeners.set(name, []);
      this._listeners.get(name).push({ fn, once });
      return this;
    }

    on(name, fn) { return this._add(name, fn, false); }
    addListener(name, fn) { return this._add(name, fn, false); }
    once(name, fn) { return this._add(name, fn, true); }

    off(name, fn) {
      const list = this._listeners.get(name);
      if (!list) return this;
      if (fn === undefined) {
        this._listeners.delete(name);
      } else {
        const index = list.findIndex((l) => l.fn === fn);
        if (index >= 0) list.splice(index, 1);
      }
      return this;
    }

    removeListener(name, fn) { return this.off(name, fn); }

    removeAllListeners(name) {
      if (name === undefined) this._listeners.clear();
      else this._listeners.delete(name);
      return this;
    }

    onAny(fn) { this._any.push(fn); return this; }

    offAny(fn) {
      const index = this._any.indexOf(fn);
      if (index >= 0) this._any.splice(index, 1);
      return this;
    }

    listenerCount(name) {
      return name === undefined
        ? [...this._listeners.values()].reduce((n, l) => n + l.length, 0)
        : (this._listeners.get(name) || []).length;
    }

    hasListeners(name) { return this.listenerCount(name) > 0; }
    eventNames() { return [...this._listeners.keys()]; }
    listeners(name) { return (this._listeners.get(name) || []).map((l) => l.fn); }

    emit(name, ...args) {
      const list = (this._listeners.get(name) || []).slice();
      for (const listener of list) {
        if (listener.once) this.off(name, listener.fn);
        try {
          listener.fn(...args);
        } catch (err) {
          console.error(`WPP listener for ${name} failed`, err);
        }
      }
      for (const fn of this._any.slice()) {
        try {
          fn(name, ...args);
        } catch (err) {
          console.error('WPP onAny listener failed', err);
        }
      }
      return list.length > 0;
    }

    waitFor(name, timeout) {
      return new Promise((resolve, reject) => {
        let timer = null;
        const fn = (...args) => {
          if (timer) clearTimeout(timer);
          resolve(args);
        };
        this.once(name, fn);
        if (timeout) {
          timer = setTimeout(() => {
            this.off(name, fn);
            reject(new Error(`timeout waiting for ${name}`));
          }, timeout);
        }
      });
    }
  }

  const ev = new Emitter();
  const ui = new Emitter(); // repaint requests for the page's own UI, never seen by WPP users

  // ---------------------------------------------------------------- Wid, MsgKey and the models

  class Wid {
    constructor(id) {
      if (id instanceof Wid) id = id._serialized;
      if (typeof id !== 'string' || id.indexOf('@') <= 0) {
        throw new WPPError('invalid_wid', `Invalid WID value for ${id}`, { id });
      }
      const at = id.indexOf('@');
      this.server = id.slice(at + 1);
      this.user = id.slice(0, at);
      this._serialized = `${this.user}@${this.server}`;
    }

    toString() { return this._serialized; }
    toJSON() { return this._serialized; }
    toJid() { return this.server === 'c.us' ? `${this.user}@s.whatsapp.net` : this._serialized; }
    equals(other) {
      if (other instanceof Wid) return other._serialized === this._serialized;
      return typeof other === 'string' && other === this._serialized;
    }
    isUser() { return this.server === 'c.us' || this.server === 'lid'; }
    isLid() { return this.server === 'lid'; }
    isGroup() { return this.server === 'g.us'; }
    isBroadcast() { return this.server === 'broadcast'; }
    isStatus() { return this.isStatusV3(); }
    isStatusV3() { return this.user === 'status' && this.server === 'broadcast'; }
    isNewsletter() { return this.server === 'newsletter'; }
    isServer() { return this.user === 'server' && this.server === 'c.us'; }
    isPSA() { return this.user === '0' && this.server === 'c.us'; }
    isBot() { return this.server === 'bot'; }
    isCompanion() { return false; }
    isOfficialBizAccount() { return false; }
    isUserNotPSA() { return this.isUser() && !this.isPSA(); }
    isGroupCall() { return this.server === 'call'; }
    getDeviceId() { return 0; }
    isSameAccount(wid) { return wid instanceof Wid && wid.user === this.user && wid.server === this.server; }

    static isXWid(server, wid) { return Wid.isWid(wid) && new Wid(wid).server === server; }
    static isWid(wid) { return wid instanceof Wid || (typeof wid === 'string' && /^[^@]+@[a-z.]+$/.test(wid)); }
    static isUser(wid) { return Wid.isWid(wid) && new Wid(wid).isUser(); }
    static isGroup(wid) { return Wid.isXWid('g.us', wid); }
    static isLid(wid) { return Wid.isXWid('lid', wid); }
    static equals(a, b) { return String(a) === String(b); }
    static user(wid) { return Wid.isWid(wid) ? new Wid(wid).user : undefined; }
  }

  /** WA-JS's assertWid: a Wid, "123@c.us", or a bare number (a user; with "-" a group). */
  function assertWid(id) {
    if (id instanceof Wid) return id;
    if (id && typeof id === 'object' && typeof id._serialized === 'string') return new Wid(id._serialized);
    if (typeof id === 'string' && id.indexOf('@') < 0 && /^[\d-]+$/.test(id)) {
      return new Wid(id.includes('-') ? `${id}@g.us` : `${id}@c.us`);
    }
    if (typeof id === 'string') return new Wid(id);
    throw new WPPError('invalid_wid', `Invalid WID value for ${id}`, { id });
  }

  class MsgKey {
    constructor(options) {
      if (!options) throw new Error('MsgKey error: obj is null/undefined');
      let fromMe;
      let remote;
      if ('selfDir' in options) {
        fromMe = options.selfDir === 'out';
        remote = fromMe ? options.to : options.from;
      } else {
        fromMe = Boolean(options.fromMe);
        remote = options.remote;
      }
      this.fromMe = fromMe;
      this.remote = assertWid(remote);
      this.id = options.id;
      this.participant = options.participant ? assertWid(options.participant) : undefined;
      this._serialized = [String(fromMe), this.remote._serialized, this.id]
        .concat(this.participant ? [this.participant._serialized] : [])
        .join('_');
    }

    toString() { return this._serialized; }
    equals(key) { return key instanceof MsgKey && key._serialized === this._serialized; }
    clone() {
      return new MsgKey({ fromMe: this.fromMe, remote: this.remote, id: this.id, participant: this.participant });
    }

    static fromString(text) {
      const parts = String(text).split('_');
      if (parts.length < 3) throw new WPPError('invalid_msg_key', `Invalid message key ${text}`);
      return new MsgKey({
        fromMe: parts[0] === 'true',
        remote: parts[1],
        id: parts[2],
        participant: parts[3] || undefined,
      });
    }

    static newId() { return Promise.resolve(randomId('3EB0')); }
  }

  function randomId(prefix) {
    const bytes = new Uint8Array(9);
    crypto.getRandomValues(bytes);
    return prefix + [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
  }

  /** Model plumbing shared by MsgModel and ChatModel, like WhatsApp's Backbone-style models. */
  class Model {
    get attributes() { return { ...this }; }
    get(name) { return this[name]; }
    set(name, value) {
      if (typeof name === 'object') Object.assign(this, name);
      else this[name] = value;
      return this;
    }
    serialize() { return { ...this }; }
    toJSON() { return { ...this }; }
  }

  class MsgModel extends Model {
    constructor(properties) {
      super();
      Object.assign(this, properties);
    }

    /** WA-JS adds these three as prototype getters (not own properties). */
    get chat() { return ChatStore.get(this.id && this.id.fromMe ? this.to : this.from); }
    get isGroupMsg() { return Boolean(this.id && this.id.remote && this.id.remote.isGroup()); }
    get quotedMsgId() {
      if (!this.quotedStanzaID) return undefined;
      return new MsgKey({
        id: this.quotedStanzaID,
        remote: this.id.remote,
        fromMe: Boolean(
          this.quotedParticipant &&
            ((state.me && this.quotedParticipant.equals(state.me)) ||
              (state.meLid && this.quotedParticipant.equals(state.meLid)))
        ),
        participant: this.id.remote.isGroup() ? this.quotedParticipant : undefined,
      });
    }
    get isSentByMe() { return Boolean(this.id && this.id.fromMe); }
    /** The writer's ContactModel (WhatsApp derives it from the sender's id). */
    get senderObj() {
      const id = this.id && this.id.fromMe ? state.me : this.author || this.from;
      return id ? ContactStore.get(id._serialized) || upsertContact(id._serialized, null) : undefined;
    }
  }

  class ChatModel extends Model {
    constructor(data) {
      super();
      this.id = new Wid(data.id);
      this.update(data);
    }

    update(data) {
      const me = state.me;
      // As on WhatsApp Web: a group's name is its subject, a person's chat has a name only
      // when the account knows theirs; formattedTitle is what the chat list shows (the
      // formatted number when there is no name).
      this.name = this.id.isGroup() ? data.name : data.contact_name || undefined;
      this.formattedTitle = data.name;
      this.t = data.t;
      this.unreadCount = data.unread_count;
      this.archive = false;
      this.pin = 0;
      this.isReadOnly = false;
      this.isAnnounceGrpRestrict = false;
      this.muteExpiration = 0;
      this.notSpam = true;
      this.kind = this.id.isGroup() ? 'group' : 'chat';
      this.isGroup = this.id.isGroup();
      this.isUser = this.id.isUser();
      const last = data.last_message;
      this.lastReceivedKey = last ? keyOf(last) : undefined;
      if (this.isGroup) {
        const members = data.participants.map((p) => p.id);
        if (me) members.push(me._serialized);
        this.groupMetadata = {
          id: this.id,
          subject: data.name,
          size: members.length,
          participants: members.map((m) => ({ id: new Wid(m), isAdmin: false, isSuperAdmin: false })),
        };
        this.contact = undefined;
      } else {
        this.groupMetadata = undefined;
        this.contact = upsertContact(this.id._serialized, data.contact_name);
      }
      return this;
    }

    get hasUnread() { return this.unreadCount > 0; }
  }

  // ---------------------------------------------------------------- state and server plumbing

  const state = {
    conn: null,
    token: null,
    mode: 'loading', // loading | qr | syncing | main | conflict | logged_out | offline
    me: null,
    meLid: null,
    meName: '',
    keepMessageIds: true,
    authCode: null,
    authenticated: false,
    mainInit: false,
    mainLoaded: false,
    mainReady: false,
    streamMode: undefined,
    streamInfo: undefined,
    online: false,
    logoutReloadMs: 1000,
    injected: false,
    ready: false,
    fullReady: false,
  };

  try {
    state.token = window.localStorage.getItem(TOKEN_KEY);
  } catch (err) {
    state.token = null;
  }

  const ChatStore = new Map(); // "<id>@c.us" -> ChatModel
  const ContactStore = new Map(); // "<id>@c.us" -> ContactModel
  const MsgStore = new Map(); // serialized key -> MsgModel
  const byInnerId = new Map(); // "<chat> <inner id>" -> MsgModel (ack keys may differ in participant)
  const rawByChat = new Map(); // chat -> Map(inner id -> server JSON), for the page's own UI
  const failedByChat = new Map(); // chat -> Map(inner id -> JSON) of sends WhatsApp refused

  function keyOf(m) {
    return new MsgKey({
      fromMe: m.from_me,
      remote: m.chat,
      id: m.id,
      participant: m.chat.endsWith('@g.us') ? m.sender : undefined,
    });
  }

  function toMsgModel(m, isNewMsg) {
    const chat = new Wid(m.chat);
    const me = state.me || new Wid('0@c.us');
    const group = chat.isGroup();
    const sender = new Wid(m.sender);
    const media = Boolean(m.is_media);
    if (!m.from_me) upsertContact(m.sender, m.push_name);
    const props = {
      id: keyOf(m),
      body: m.body,
      type: m.type,
      subtype: null,
      t: m.t,
      notifyName: m.from_me ? '' : m.push_name || '',
      from: m.from_me ? me : chat,
      to: m.from_me ? chat : me,
      author: group ? sender : undefined,
      self: m.from_me ? 'out' : 'in',
      ack: m.ack,
      invis: false,
      star: false,
      isNewMsg: Boolean(isNewMsg),
      recvFresh: !m.from_me && Boolean(isNewMsg),
      local: m.origin === 'bot' ? true : undefined,
      isSentByMeFromWeb: m.origin === 'bot',
      broadcast: false,
      isForwarded: false,
      forwardingScore: 0,
      labels: [],
      mentionedJidList: (m.mentions || []).map((w) => new Wid(w)),
      groupMentions: [],
      urlText: null,
      urlNumber: null,
      isVcardOverMmsDocument: false,
      isFromTemplate: false,
      isDynamicReplyButtonsMsg: false,
      isMdHistoryMsg: false,
      isGif: false,
      isViewOnce: false,
      isLive: false,
      isAnimated: false,
      isCaptionByUser: Boolean(m.caption),
      isSendFailure: m.ack < 0,
      isMedia: media,
      isNotification: false,
    };
    if (media) {
      props.caption = m.caption || undefined;
      props.mimetype = m.mimetype;
      props.size = m.size;
      props.filename = m.filename || undefined;
      props.mediaData = { type: m.type, mediaStage: 'RESOLVED', mimetype: m.mimetype, size: m.size, filename: m.filename || undefined };
    }
    if (m.edit_t_ms) {
      props.latestEditMsgKey = new MsgKey({ fromMe: m.from_me, remote: chat, id: `${m.id}E${m.edit_t_ms}`.slice(0, 40), participant: group ? sender : undefined });
      props.latestEditSenderTimestampMs = m.edit_t_ms;
    }
    if (m.quoted) {
      props.quotedStanzaID = m.quoted.id;
      props.quotedParticipant = new Wid(m.quoted.sender);
      props.quotedMsg = { type: m.quoted.type, body: m.quoted.body };
    }
    return new MsgModel(props);
  }

  /** Keeps one live model per message, as WhatsApp's MsgStore does. */
  function upsertMessage(m, isNewMsg) {
    rememberRaw(m);
    const key = keyOf(m)._serialized;
    const known = MsgStore.get(key);
    if (known) {
      const fresh = toMsgModel(m, known.isNewMsg);
      const ack = fresh.ack < 0 ? fresh.ack : Math.max(known.ack, fresh.ack);
      for (const name of ['type', 'body', 'caption', 'mimetype', 'size', 'filename', 'mediaData', 'isMedia', 'isSendFailure', 'isCaptionByUser', 'latestEditMsgKey', 'latestEditSenderTimestampMs']) {
        known[name] = fresh[name];
      }
      known.ack = ack;
      return known;
    }
    const model = toMsgModel(m, isNewMsg);
    MsgStore.set(key, model);
    byInnerId.set(`${m.chat} ${m.id}`, model);
    return model;
  }

  function rememberRaw(m) {
    if (!rawByChat.has(m.chat)) rawByChat.set(m.chat, new Map());
    const known = rawByChat.get(m.chat).get(m.id);
    if (known && m.ack >= 0 && known.ack > m.ack) m = { ...m, ack: known.ack };
    rawByChat.get(m.chat).set(m.id, m);
  }

  /** One live ContactModel per person, as WhatsApp's ContactStore; a known name is kept. */
  function upsertContact(id, name, lid) {
    const known = ContactStore.get(id);
    if (!known) {
      const created = new ContactModel({ id, name, lid });
      ContactStore.set(id, created);
      return created;
    }
    if (name) known.name = known.pushname = known.shortName = name;
    if (lid) known.lid = new Wid(lid);
    return known;
  }

  function upsertChat(data) {
    if (data.last_message) rememberRaw(data.last_message);
    const known = ChatStore.get(data.id);
    if (known) return known.update(data);
    const chat = new ChatModel(data);
    ChatStore.set(data.id, chat);
    return chat;
  }

  function changed(what) {
    ui.emit('change', what);
  }

  async function api(method, path, body) {
    const headers = { 'Content-Type': 'application/json' };
    if (state.token) headers['X-Lookalike-Session'] = state.token;
    if (state.conn) headers['X-Lookalike-Conn'] = state.conn;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const details = data.send_result ? { sendResult: data.send_result } : undefined;
      throw new WPPError(data.error || `http_${response.status}`, data.message || response.statusText, details);
    }
    return data;
  }

  function emitSoon(name, ...args) {
    queueMicrotask(() => ev.emit(name, ...args));
  }

  function setStream(mode, info) {
    if (state.streamMode !== mode) {
      state.streamMode = mode;
      ev.emit('conn.stream_mode_changed', mode);
    }
    if (info && state.streamInfo !== info) {
      state.streamInfo = info;
      ev.emit('conn.stream_info_changed', info);
    }
  }

  function storeToken(token) {
    state.token = token;
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      /* private mode: the login then lasts as long as the page */
    }
  }

  // ---------------------------------------------------------------- the event stream

  let source = null;
  let reconnectTimer = null;
  let unloading = false;

  function connect() {
    reconnectTimer = null;
    const url = '/events' + (state.token ? `?token=${encodeURIComponent(state.token)}` : '');
    source = new EventSource(url);
    const on = (name, handler) =>
      source.addEventListener(name, (event) => {
        try {
          handler(JSON.parse(event.data));
        } catch (err) {
          console.error(`look-alike: handling ${name} failed`, err);
        }
      });
    on('hello', onHello);
    on('auth_code', (d) => {
      state.authCode = d.auth_code;
      ev.emit('conn.auth_code_change', d.auth_code);
      changed('qr');
    });
    on('authenticated', onAuthenticated);
    on('msg', onMessage);
    on('msg_update', onMessageUpdate);
    on('edit', onEdit);
    on('revoke', onRevoke);
    on('reaction', onReaction);
    on('config', (d) => {
      state.keepMessageIds = d.keep_message_ids !== false;
    });
    on('ack', onAck);
    on('chat', (d) => {
      upsertChat(d.chat);
      changed('chats');
    });
    on('conflict', onConflict);
    on('logout', onLogout);
    on('reset', () => {
      ChatStore.clear();
      ContactStore.clear();
      MsgStore.clear();
      byInnerId.clear();
      rawByChat.clear();
      failedByChat.clear();
      loadChats().catch(() => null).then(() => changed('reset'));
    });
    source.onerror = () => {
      if (unloading || state.mode === 'logged_out') return;
      source.close();
      if (state.online) {
        state.online = false;
        ev.emit('conn.online', false);
      }
      changed('offline');
      if (!reconnectTimer) reconnectTimer = setTimeout(connect, 1000);
    };
  }

  function onHello(h) {
    const first = !state.injected;
    const reconnect = state.conn !== null;
    state.conn = h.conn;
    state.me = new Wid(h.me);
    state.meLid = h.me_lid ? new Wid(h.me_lid) : null;
    state.meName = h.me_name;
    state.keepMessageIds = h.keep_message_ids !== false;
    state.logoutReloadMs = h.logout_reload_ms;
    if (h.session_invalid) storeToken(null);
    if (!state.online) {
      state.online = true;
      if (reconnect) ev.emit('conn.online', true);
    }
    if (first) {
      state.injected = true;
      ev.emit('loader.injected');
      state.ready = true;
      ev.emit('loader.ready');
      state.fullReady = true;
      ev.emit('loader.full_ready');
    }
    if (h.mode === 'qr') {
      if (state.authenticated) {
        // The session ended while this page was disconnected: start over, as WhatsApp does.
        window.location.reload();
        return;
      }
      state.mode = 'qr';
      state.authCode = h.auth_code;
      setStream('QR', 'PAIRING');
      ev.emit('conn.auth_code_change', h.auth_code);
      ev.emit('conn.require_auth');
      changed('qr');
    } else if (h.mode === 'main') {
      enterMain(true).catch((err) => console.error('look-alike: loading failed', err));
    }
  }

  function onAuthenticated(d) {
    storeToken(d.token);
    state.me = new Wid(d.me);
    state.meLid = d.me_lid ? new Wid(d.me_lid) : null;
    state.meName = d.me_name;
    state.authCode = null;
    ev.emit('conn.auth_code_change', null);
    enterMain(false).catch((err) => console.error('look-alike: loading failed', err));
  }

  async function enterMain(restored) {
    const wasReady = state.mainReady;
    state.mode = 'syncing';
    state.authenticated = true;
    if (!state.mainInit) {
      state.mainInit = true;
      ev.emit('conn.main_init');
    }
    setStream('SYNCING', 'SYNCING');
    changed('syncing');
    await loadChats();
    if (!state.mainLoaded) {
      state.mainLoaded = true;
      ev.emit('conn.main_loaded');
      if (!restored) ev.emit('conn.authenticated');
    }
    await api('POST', '/api/ready');
    state.mode = 'main';
    setStream('MAIN', 'NORMAL');
    if (!wasReady) {
      state.mainReady = true;
      ev.emit('conn.main_ready');
    }
    changed('main');
  }

  async function loadChats() {
    const chats = await api('GET', '/api/chats');
    const seen = new Set();
    for (const data of chats) {
      upsertChat(data);
      seen.add(data.id);
    }
    for (const id of [...ChatStore.keys()]) if (!seen.has(id)) ChatStore.delete(id);
    return chats;
  }

  function isLive() {
    return state.mode === 'main' && state.mainReady;
  }

  function onMessage(d) {
    upsertChat(d.chat);
    const model = upsertMessage(d.message, d.live);
    if (d.live && isLive()) emitSoon('chat.new_message', model);
    changed('msg');
  }

  function onMessageUpdate(d) {
    const model = upsertMessage(d.message, d.live);
    // WA-JS announces a decrypted placeholder again, with the same id and model object.
    if (d.live && isLive()) emitSoon('chat.new_message', model);
    changed('msg');
  }

  /** An edit: WA-JS emits the original model, whose body is now the new text. */
  function onEdit(d) {
    const model = upsertMessage(d.message, false);
    if (d.live && isLive()) {
      queueMicrotask(() => ev.emit('chat.msg_edited', { chat: model.to, id: model.id.toString(), msg: model }));
    }
    changed('msg');
  }

  /** A delete for everyone: refId is the deleted message, id the protocol message's key. */
  function onRevoke(d) {
    const m = d.message;
    const model = upsertMessage(m, false);
    if (d.live && isLive()) {
      const chat = new Wid(m.chat);
      const author = chat.isGroup() ? new Wid(m.sender) : undefined;
      ev.emit('chat.msg_revoke', {
        author,
        from: m.from_me ? state.me : chat,
        id: new MsgKey({ fromMe: m.from_me, remote: chat, id: d.revoke_id, participant: author }),
        refId: model.id,
        to: m.from_me ? chat : state.me,
        type: 'sender_revoke',
      });
    }
    changed('msg');
  }

  /** A reaction (an empty reactionText takes it back). */
  function onReaction(d) {
    const m = d.message;
    const model = upsertMessage(m, false);
    if (d.live && isLive()) {
      const chat = new Wid(m.chat);
      const sender = new Wid(d.reaction.sender);
      const fromMe = sender.equals(state.me) || Boolean(state.meLid && sender.equals(state.meLid));
      ev.emit('chat.new_reaction', {
        id: new MsgKey({ fromMe, remote: chat, id: d.reaction.id, participant: chat.isGroup() ? sender : undefined }),
        msgId: model.id,
        reactionText: d.reaction.text,
        read: false,
        sender,
        orphan: 0,
        orphanReason: null,
        timestamp: d.reaction.t_ms,
      });
    }
    changed('msg');
  }

  function onAck(d) {
    const chat = new Wid(d.chat);
    const ids = d.ids.map(
      (k) => new MsgKey({ id: k.id, remote: chat, fromMe: k.from_me, participant: k.participant || undefined })
    );
    for (const k of d.ids) {
      const model = byInnerId.get(`${d.chat} ${k.id}`);
      if (model && model.ack < d.ack) model.ack = d.ack;
      const raw = rawByChat.get(d.chat) && rawByChat.get(d.chat).get(k.id);
      if (raw && raw.ack < d.ack) raw.ack = d.ack;
    }
    if (d.live && isLive()) {
      ev.emit('chat.msg_ack_change', {
        ack: d.ack,
        chat,
        sender: d.sender ? new Wid(d.sender) : undefined,
        ids,
      });
    }
    changed('ack');
  }

  function onConflict() {
    state.mode = 'conflict';
    setStream('CONFLICT');
    changed('conflict');
  }

  function onLogout(d) {
    state.authenticated = false;
    state.mode = 'logged_out';
    storeToken(null);
    if (source) source.close();
    ev.emit('conn.logout_reason', d.reason);
    ev.emit('conn.logout');
    changed('logout');
    setTimeout(() => window.location.reload(), state.logoutReloadMs);
  }

  async function takeover() {
    await api('POST', '/api/takeover');
    await enterMain(true);
  }

  window.addEventListener('pagehide', () => {
    unloading = true;
    if (state.conn && navigator.sendBeacon) {
      navigator.sendBeacon(`/api/bye?conn=${encodeURIComponent(state.conn)}`);
    }
  });

  // ---------------------------------------------------------------- WPP.conn

  function assertMain() {
    if (!state.authenticated) throw new WPPError('not_authenticated', 'WhatsApp Web is not logged in');
    if (state.mode === 'conflict') throw new WPPError('conflict', 'WhatsApp is open in another window');
    if (state.mode !== 'main') throw new WPPError('not_ready', 'WhatsApp Web is still loading');
  }

  function buildConstants() {
    const [base] = WA_VERSION.split('-');
    const [primary, secondary, tertiary] = base.split('.');
    return {
      VERSION_STR: WA_VERSION,
      VERSION_BASE: base,
      VERSION_PRIMARY: primary,
      VERSION_SECONDARY: secondary,
      VERSION_TERTIARY: tertiary,
      WINDOWS_BUILD: null,
      PARSED: {
        PRIMARY: parseInt(primary, 10),
        SECONDARY: parseInt(secondary, 10),
        TERTIARY: parseInt(tertiary, 10),
      },
    };
  }

  const conn = {
    isAuthenticated: () => state.authenticated,
    isRegistered: () => state.authenticated,
    isMainInit: () => state.mainInit,
    isMainLoaded: () => state.mainLoaded,
    isMainReady: () => state.mainReady,
    isOnline: () => state.online,
    isIdle: () => false,
    isMultiDevice: () => true,
    needsUpdate: () => false,
    getMyUserId: () => (state.authenticated ? state.me : undefined),
    getMyUserWid: () => (state.authenticated ? state.me : undefined),
    getMyUserLid: () => {
      // WA-JS: UserPrefs.getMeLidUserOrThrow()
      if (!state.authenticated || !state.meLid) throw new WPPError('no_lid', 'The account has no LID yet');
      return state.meLid;
    },
    getMyDeviceId: () => (state.authenticated ? state.me : undefined),
    getAuthCode: async () => (state.authenticated ? null : state.authCode),
    getBuildConstants: buildConstants,
    getStreamData: () => ({ mode: state.streamMode, info: state.streamInfo }),
    getPlatform: () => 'lookalike',
    async logout() {
      const done = ev.waitFor('conn.logout', 10000);
      await api('POST', '/api/logout');
      await done;
      return true;
    },
  };

  // ---------------------------------------------------------------- WPP.chat

  function getChat(chatId) {
    return ChatStore.get(assertWid(chatId)._serialized);
  }

  function assertGetChat(chatId) {
    const chat = getChat(chatId);
    if (!chat) throw new WPPError('chat_not_found', `Chat not found for ${chatId}`, { id: String(chatId) });
    return chat;
  }

  async function fetchChatMessages(chatId) {
    const data = await api('GET', `/api/messages?chat=${encodeURIComponent(chatId)}`);
    upsertChat(data.chat);
    // Refused sends stay in the chat (ack -1), as on WhatsApp Web, unless stored since.
    const failed = failedByChat.get(chatId);
    if (!failed || !failed.size) return data.messages;
    const stored = new Set(data.messages.map((m) => m.id));
    for (const id of [...failed.keys()]) if (stored.has(id)) failed.delete(id);
    return data.messages.concat([...failed.values()]).sort((a, b) => a.t - b.t);
  }

  async function getMessages(chatId, options) {
    options = options || {};
    const chat = assertGetChat(chatId);
    let count = options.count || 20;
    const direction = options.direction === 'after' ? 'after' : 'before';
    const raw = await fetchChatMessages(chat.id._serialized);
    if (options.onlyUnread) {
      if (!chat.hasUnread) return [];
      count = count < 0 ? chat.unreadCount : Math.min(count, chat.unreadCount);
    }
    let picked;
    if (options.id) {
      const anchor = MsgKey.fromString(options.id).id;
      const index = raw.findIndex((m) => m.id === anchor);
      if (index < 0) return [];
      if (direction === 'before') {
        const before = raw.slice(0, index);
        picked = count < 0 ? before : before.slice(Math.max(0, before.length - count));
      } else {
        const after = raw.slice(index + 1);
        picked = count < 0 ? after : after.slice(0, count);
      }
    } else {
      picked = count < 0 ? raw : raw.slice(Math.max(0, raw.length - count));
    }
    return picked.map((m) => {
      const model = upsertMessage(m, false);
      if (options.onlyUnread) model.isNewMsg = true;
      return model;
    });
  }

  async function list(options) {
    options = options || {};
    await loadChats();
    let models = [...ChatStore.values()].sort((a, b) => b.t - a.t);
    if (options.onlyUsers) models = models.filter((c) => c.isUser);
    if (options.onlyGroups) models = models.filter((c) => c.id.isGroup());
    if (options.onlyWithUnreadMessage) models = models.filter((c) => c.hasUnread);
    if (options.onlyArchived) models = models.filter((c) => c.archive);
    const count = options.count == null ? Infinity : options.count;
    return models.slice(0, count);
  }

  async function markIsRead(chatId) {
    const chat = assertGetChat(chatId);
    const result = await api('POST', '/api/read', { chat: chat.id._serialized });
    upsertChat(result.chat);
    changed('chats');
    return { wid: chat.id, unreadCount: result.unread_count };
  }

  async function setPresence(chatId, presence) {
    const wid = assertWid(chatId);
    await api('POST', '/api/presence', { chat: wid._serialized, state: presence });
  }

  async function getMessageById(id) {
    const key = id instanceof MsgKey ? id._serialized : String(id);
    const known = MsgStore.get(key);
    if (known) return known;
    const inner = key.includes('_') ? MsgKey.fromString(key).id : key;
    const m = await api('GET', `/api/message?id=${encodeURIComponent(inner)}`);
    return upsertMessage(m, false);
  }

  async function resolveQuoted(quoted, chat) {
    let model = quoted;
    if (typeof quoted === 'string' || quoted instanceof MsgKey) model = await getMessageById(quoted);
    if (!(model instanceof MsgModel)) throw new WPPError('invalid_quoted_msg', 'Invalid quotedMsg', { quotedMsg: quoted });
    if (!model.id.remote.equals(chat.id)) throw new WPPError('quoted_msg_can_not_reply', 'QuotedMsg can not reply');
    return model;
  }

  function detectMentions(text, chat) {
    if (!chat.groupMetadata) return [];
    const members = chat.groupMetadata.participants.map((p) => p.id._serialized);
    const found = [];
    for (const match of String(text).matchAll(/(?<=@)(\d+)\b/g)) {
      for (const candidate of [`${match[1]}@lid`, `${match[1]}@c.us`]) {
        if (members.includes(candidate)) {
          found.push(candidate);
          break;
        }
      }
    }
    return found;
  }

  async function sendTextMessage(chatId, content, options) {
    options = { detectMentioned: true, linkPreview: true, markIsRead: true, waitForAck: true, delay: 0, ...(options || {}) };
    assertMain();
    const wid = assertWid(chatId);
    let chat = getChat(wid);
    if (!chat) {
      if (!wid.isUser()) throw new WPPError('chat_not_found', `Chat not found for ${wid}`, { id: wid._serialized });
      chat = upsertChat({ id: wid._serialized, name: `+${wid.user}`, participants: [], unread_count: 0, t: 0, last_message: null });
    }
    if (options.markIsRead && chat.hasUnread) await markIsRead(chat.id).catch(() => null);
    if (options.delay) {
      await setPresence(chat.id, 'composing').catch(() => null);
      await new Promise((resolve) => setTimeout(resolve, options.delay));
      await setPresence(chat.id, 'paused').catch(() => null);
    }
    let id = randomId('3EB0');
    if (options.messageId) {
      const key = typeof options.messageId === 'string' ? MsgKey.fromString(options.messageId) : options.messageId;
      if (!key.fromMe) throw new WPPError('message_key_is_not_from_me', 'Message key is not from me');
      if (!key.remote.equals(chat.id)) throw new WPPError('message_key_remote_id_is_not_same_of_chat', 'Message key remote ID is not same of chat');
      // Some WhatsApp Web builds assign their own id whatever was asked (keep_message_ids off).
      if (state.keepMessageIds) id = key.id;
    }
    let mentions = [];
    if (options.mentionedList && !Array.isArray(options.mentionedList)) {
      throw new WPPError('mentioned_list_is_not_array', 'The option mentionedList is not an array');
    }
    if (options.mentionedList && options.mentionedList.length) mentions = options.mentionedList.map((m) => assertWid(m)._serialized);
    else if (options.detectMentioned) mentions = detectMentions(content, chat);
    const quoted = options.quotedMsg ? await resolveQuoted(options.quotedMsg, chat) : null;
    const group = chat.id.isGroup();
    const local = {
      id,
      chat: chat.id._serialized,
      from_me: true,
      origin: 'bot',
      sender: state.me._serialized,
      author: group ? state.me._serialized : null,
      notify_name: state.meName,
      body: String(content),
      type: 'chat',
      t: Math.floor(Date.now() / 1000),
      ack: 0,
      mentions,
      quoted_id: quoted ? quoted.id.id : null,
      quoted: quoted
        ? { id: quoted.id.id, sender: (quoted.author || quoted.from)._serialized, from_me: quoted.id.fromMe, type: quoted.type, body: quoted.body }
        : null,
      is_media: false,
      read_by_page: false,
      live: true,
    };
    const model = upsertMessage(local, true);
    emitSoon('chat.new_message', model);
    changed('msg');
    const sent = api('POST', '/api/send', {
      chat: local.chat,
      id,
      body: local.body,
      quoted: local.quoted_id,
      mentions,
    }).then(
      (result) => {
        upsertChat(result.chat);
        upsertMessage(result.message, true);
        ev.emit('chat.msg_ack_change', { ack: 1, chat: model.to, ids: [model.id] });
        changed('msg');
        return { messageSendResult: 'OK', t: result.message.t };
      },
      (err) => {
        console.error('look-alike: send failed', err);
        const failed = { ...local, ack: -1 };
        if (!failedByChat.has(local.chat)) failedByChat.set(local.chat, new Map());
        failedByChat.get(local.chat).set(id, failed);
        upsertMessage(failed, true);
        changed('msg');
        const result = err.sendResult || (err.code === 'bad_request' ? 'ERROR_UNKNOWN' : 'ERROR_NETWORK');
        return { messageSendResult: result };
      }
    );
    let sendMsgResult = null;
    if (options.waitForAck) sendMsgResult = await sent;
    return {
      id: model.id.toString(),
      ack: model.ack,
      from: model.from.toString(),
      to: chat.id.toString(),
      sendMsgResult,
    };
  }

  const chatApi = {
    sendTextMessage,
    getMessages,
    list,
    markIsRead,
    getMessageById,
    get: (chatId) => getChat(chatId),
    find: async (chatId) => assertGetChat(chatId),
    markIsComposing: async (chatId, duration) => {
      await setPresence(chatId, 'composing');
      if (duration) {
        await new Promise((resolve) => setTimeout(resolve, duration));
        await setPresence(chatId, 'paused');
      }
    },
    markIsPaused: (chatId) => setPresence(chatId, 'paused'),
    generateMessageID: async (chatId) => {
      const wid = assertWid(chatId);
      return new MsgKey({ fromMe: true, remote: wid, id: randomId('3EB0'), participant: wid.isGroup() ? state.me : undefined });
    },
  };

  // ---------------------------------------------------------------- WPP.contact

  class ContactModel extends Model {
    constructor(data) {
      super();
      this.id = new Wid(data.id);
      // The look-alike's people have one name: the account's contact name for them and the
      // push name they set are the same (both undefined when only the number is known).
      this.name = data.name || undefined;
      this.pushname = data.name || undefined;
      this.shortName = data.name || undefined;
      this.type = 'in';
      this.isMyContact = true;
      this.isBusiness = false;
      this.isEnterprise = false;
      // Newer WhatsApp Web builds carry both ids on the contact.
      this.lid = data.lid ? new Wid(data.lid) : undefined;
      this.phoneNumber = this.id.server === 'c.us' ? this.id : undefined;
    }
  }

  /** As WA-JS queryWidExists: `{wid, biz, lid}` for an id on WhatsApp, null otherwise. */
  async function queryWidExists(contactId) {
    const wid = assertWid(contactId);
    const found = await api('GET', `/api/exists?id=${encodeURIComponent(wid._serialized)}`);
    if (!found.exists) return null;
    return { wid: new Wid(found.wid), biz: false, lid: found.lid ? new Wid(found.lid) : undefined };
  }

  const contact = {
    queryWidExists,
    queryExists: queryWidExists, // WA-JS keeps the old name as a deprecated alias
    list: async () => (await api('GET', '/api/contacts')).map((c) => upsertContact(c.id, c.name, c.lid)),
    get: async (contactId) => {
      const wid = assertWid(contactId);
      const found = (await contact.list()).find((c) => c.id.equals(wid) || (c.lid && c.lid.equals(wid)));
      return found;
    },
    /** As WA-JS: plain {id, server, _serialized} objects, never Wid instances. */
    getPnLidEntry: async (contactId) => {
      const wid = assertWid(contactId);
      if (wid.server !== 'c.us' && wid.server !== 'lid') {
        throw new WPPError('invalid_wid', `Invalid WID value for ${wid} - getPnLidEntry only supports @c.us and @lid.`);
      }
      const entry = await api('GET', `/api/lid?id=${encodeURIComponent(wid._serialized)}`);
      const plainWid = (text) => {
        if (!text) return undefined;
        const w = new Wid(text);
        return { id: w.user, server: w.server, _serialized: w._serialized };
      };
      return { lid: plainWid(entry.lid), phoneNumber: plainWid(entry.phoneNumber), contact: undefined };
    },
  };

  const group = {
    getParticipants: async (groupId) => {
      const chat = assertGetChat(groupId);
      if (!chat.groupMetadata) throw new WPPError('not_a_group', `${groupId} is not a group`);
      return chat.groupMetadata.participants;
    },
  };

  // ---------------------------------------------------------------- window.WPP

  const loader = {
    onInjected: (listener, delay) => ev.on('loader.injected', () => setTimeout(listener, delay || 0)),
    onReady: (listener, delay) => ev.on('loader.ready', () => setTimeout(listener, delay || 0)),
    onFullReady: (listener, delay) => ev.on('loader.full_ready', () => setTimeout(listener, delay || 0)),
    get isInjected() { return state.injected; },
    get isReady() { return state.ready; },
    get isFullReady() { return state.fullReady; },
    loaderType: 'lookalike',
  };

  const WPP = {
    version: WPP_VERSION,
    supportedWhatsappWeb: SUPPORTED_WHATSAPP_WEB,
    license: 'lookalike',
    get isInjected() { return state.injected; },
    get isReady() { return state.ready; },
    get isFullReady() { return state.fullReady; },
    loader,
    ev,
    on: ev.on.bind(ev),
    once: ev.once.bind(ev),
    off: ev.off.bind(ev),
    addListener: ev.addListener.bind(ev),
    removeListener: ev.removeListener.bind(ev),
    removeAllListeners: ev.removeAllListeners.bind(ev),
    onAny: ev.onAny.bind(ev),
    offAny: ev.offAny.bind(ev),
    emit: ev.emit.bind(ev),
    listenerCount: ev.listenerCount.bind(ev),
    listeners: ev.listeners.bind(ev),
    hasListeners: ev.hasListeners.bind(ev),
    eventNames: ev.eventNames.bind(ev),
    waitFor: ev.waitFor.bind(ev),
    conn,
    chat: chatApi,
    group,
    contact,
    util: { WPPError },
    whatsapp: {
      Wid,
      MsgKey,
      MsgModel,
      ChatModel,
      ContactModel,
      ChatStore,
      MsgStore,
      Stream: {
        get mode() { return state.streamMode; },
        get info() { return state.streamInfo; },
      },
      Socket: {
        get state() { return state.mode === 'conflict' ? 'CONFLICT' : state.authenticated ? 'CONNECTED' : 'UNPAIRED'; },
        takeover,
        logout: () => conn.logout(),
      },
    },
  };

  // Do not let a real WA-JS bundle, injected by mistake, replace the look-alike's WPP.
  Object.defineProperty(window, 'WPP', {
    configurable: false,
    enumerable: true,
    get: () => WPP,
    set: () => console.warn('look-alike: window.WPP is built in and cannot be replaced'),
  });
  window.Debug = { VERSION: WA_VERSION };

  // The page's own UI (app.js) reads the mirror through this; gateways should not.
  window.__lookalike = {
    state,
    ui,
    takeover,
    rawMessages: (chatId) => [...(rawByChat.get(chatId) || new Map()).values()],
    loadMessages: async (chatId) => {
      const messages = await fetchChatMessages(chatId);
      for (const m of messages) upsertMessage(m, false);
      return messages;
    },
    chats: () => [...ChatStore.values()].sort((a, b) => b.t - a.t),
  };

  // Like WA-JS, which is injected into an already loaded WhatsApp Web, nothing is announced
  // before the page has loaded: handlers registered by DOMContentLoaded see every event.
  if (document.readyState === 'complete') setTimeout(connect, 0);
  else window.addEventListener('load', () => setTimeout(connect, 0), { once: true });
})();
