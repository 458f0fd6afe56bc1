/*
 * The page side of the gateway: everything that knows WhatsApp Web's objects lives here and
 * in page.py. Written against WA-JS (@wppconnect/wa-js) 4.6.0; pipeline/wajs pins the bundle.
 *
 * Installed as an init script on every page of the browser context, so it runs again after
 * every reload. It waits for window.WPP (the look-alike defines it in <head>; on WhatsApp Web
 * the gateway injects the WA-JS bundle), then forwards events to Python through the binding
 * window.__wabotEvent(kind, data). WA-JS hands over live models (MsgKey, Wid, prototype
 * getters): they become plain JSON here, because Playwright copies only own data properties.
 */
(() => {
  if (window.__wabot) return;
  const emit = (kind, data) => {
    try {
      const sent = window.__wabotEvent(kind, data === undefined ? null : data);
      if (sent && sent.catch) sent.catch(() => null);
    } catch (e) {
      /* the binding is gone while the page closes */
    }
  };
  const wid = (w) => {
    if (w == null) return null;
    if (typeof w === 'string') return w;
    return w._serialized || String(w);
  };
  const read = (fn) => {
    try {
      return fn();
    } catch (e) {
      return undefined;
    }
  };
  const text = (v) => (typeof v === 'string' && v.trim() ? v.trim() : null);
  // Who wrote, by name: the account's contact name for them (ContactModel.name, from the
  // address book), else the push name they set themselves (MsgModel.notifyName, or the
  // contact's pushname / verifiedName for a business).
  const senderName = (m) => {
    const c = read(() => m.senderObj);
    return (
      text(read(() => c.name)) ||
      text(m.notifyName) ||
      text(read(() => c.pushname)) ||
      text(read(() => c.verifiedName))
    );
  };
  // The chat's title (WPP.chat.get: a ChatModel): a group's subject, or the contact name of
  // the person in a 1:1 chat. Not formattedTitle there: without a name it is the number.
  const chatName = (chat, group) => {
    const c = read(() => window.WPP.chat.get(chat));
    if (!c) return null;
    if (group) {
      return text(read(() => c.groupMetadata.subject)) || text(c.name) || text(read(() => c.formattedTitle));
    }
    return text(read(() => c.contact.name)) || text(c.name) || text(read(() => c.contact.pushname));
  };
  const plain = (m) => {
    const key = m.id || {};
    const mentioned = read(() => m.mentionedJidList) || [];
    const chat = wid(key.remote) || wid(read(() => m.chat && m.chat.id));
    const fromMe = key.fromMe === true;
    const group = typeof chat === 'string' && chat.endsWith('@g.us');
    const sender = fromMe ? null : senderName(m);
    return {
      id: key.id,
      serialized: key._serialized || null,
      fromMe,
      chat,
      senderName: sender,
      chatName: (chat && chatName(chat, group)) || (group || fromMe ? null : sender),
      from: wid(m.from),
      to: wid(m.to),
      author: wid(m.author) || wid(key.participant),
      body: typeof m.body === 'string' ? m.body : '',
      caption: typeof m.caption === 'string' ? m.caption : null,
      type: m.type || 'unknown',
      t: m.t,
      isNewMsg: m.isNewMsg !== false,
      mentioned: Array.from(mentioned).map(wid).filter(Boolean),
      quotedId: m.quotedStanzaID || read(() => m.quotedMsgId && m.quotedMsgId.id) || null,
      quotedParticipant: wid(read(() => m.quotedParticipant)),
      quotedFromMe: read(() => m.quotedMsgId && m.quotedMsgId.fromMe) === true,
      subtype: typeof m.subtype === 'string' ? m.subtype : null,
      isMedia: read(() => m.isMedia) === true,
      mimetype: m.mimetype || null,
      size: typeof m.size === 'number' ? m.size : null,
      filename: m.filename || null,
      duration: m.duration ? Number(m.duration) : null,
    };
  };

  let attached = false;
  const attach = () => {
    const W = window.WPP;
    if (attached || !W || typeof W.on !== 'function') return false;
    attached = true;
    W.on('chat.new_message', (m) => emit('message', plain(m)));
    W.on('chat.msg_ack_change', (e) =>
      emit('ack', { ack: e.ack, chat: wid(e.chat), ids: (e.ids || []).map((k) => k.id) }),
    );
    // An edit: WA-JS hands over the original message, its body already the new text.
    W.on('chat.msg_edited', (e) => {
      const m = e && e.msg;
      if (!m) return;
      emit('edit', {
        ...plain(m),
        editT: read(() => Number(m.latestEditSenderTimestampMs)) || null,
        editId: read(() => m.latestEditMsgKey.id) || null,
      });
    });
    // A delete for everyone: refId is the deleted message, id the protocol message's own key.
    W.on('chat.msg_revoke', (e) =>
      emit('revoke', {
        target: read(() => e.refId.id) || null,
        id: read(() => e.id.id) || null,
        chat: wid(read(() => e.refId.remote)) || wid(read(() => e.id.remote)),
        fromMe: read(() => e.id.fromMe) === true,
        from: wid(e.from),
        to: wid(e.to),
        author: wid(e.author),
        revokeType: e.type || 'revoke',
      }),
    );
    // A reaction on msgId; an empty reactionText takes it back.
    W.on('chat.new_reaction', (e) =>
      emit('reaction', {
        id: read(() => e.id.id) || null,
        target: read(() => e.msgId.id) || null,
        chat: wid(read(() => e.msgId.remote)),
        fromMe: read(() => e.id.fromMe) === true,
        sender: wid(e.sender),
        reaction: typeof e.reactionText === 'string' ? e.reactionText : '',
        t: typeof e.timestamp === 'number' ? e.timestamp : null,
      }),
    );
    W.on('conn.auth_code_change', (code) => emit('qr', code ? code.fullCode : null));
    W.on('conn.authenticated', () => emit('authenticated'));
    W.on('conn.main_ready', () => emit('main_ready'));
    W.on('conn.logout_reason', (reason) => emit('logout_reason', reason == null ? null : String(reason)));
    W.on('conn.logout', () => emit('logout'));
    W.on('conn.stream_mode_changed', (mode) => emit('stream_mode', String(mode)));
    emit('attached', { wajs: read(() => W.version) || null });
    return true;
  };
  const wait = () => {
    if (!attach()) setTimeout(wait, 50);
  };
  wait();

  const chatId = (c) => wid(c.id);

  window.__wabot = {
    /** Where the session stands; polled by the gateway as a safety net for missed events. */
    state() {
      const W = window.WPP;
      const conn = W && W.conn;
      const flag = (fn) => read(fn) === true;
      return {
        attached,
        wajs: read(() => W.version) || null,
        authenticated: flag(() => conn.isAuthenticated()),
        mainReady: flag(() => conn.isMainReady()),
        me: wid(read(() => conn.getMyUserId())),
        meLid: wid(read(() => conn.getMyUserLid())), // WA-JS conn.getMyUserLid (throws without)
        streamMode: read(() => String(W.whatsapp.Stream.mode)) || null,
      };
    },
    async authCode() {
      const code = await window.WPP.conn.getAuthCode();
      return code ? code.fullCode : null;
    },
    /**
     * Sends asking for our own message id, so a resend after a crash can be recognised. A
     * WhatsApp Web may assign its own id instead: ``id`` is the serialized key WA-JS returns.
     * Answers ``{id, ack, result, error}``: ``result`` is WA-JS's
     * sendMsgResult.messageSendResult ('OK' when WhatsApp took it; a refusal resolves, it does
     * not throw), ``error`` ``{code, message}`` when WA-JS threw (a WPPError's code, such as
     * 'chat_not_found'), or 'not_a_registered_number' / 'offline' from the check below.
     */
    async send(chat, text, messageId, delayMs) {
      const W = window.WPP;
      const failed = (code, message) => ({ id: null, ack: null, result: null, error: { code, message } });
      try {
        // sendTextMessage does not check that a number is on WhatsApp (WPP.chat.find makes the
        // chat); WPP.contact.queryWidExists answers null for one without an account, and also
        // when the query failed, so an offline page is not taken for a missing account.
        if (/@(c\.us|lid)$/.test(chat) && !read(() => W.chat.get(chat))) {
          const query = W.contact.queryWidExists || W.contact.queryExists;
          if (typeof query === 'function' && !(await query(chat))) {
            if (read(() => W.conn.isOnline()) === false) {
              return failed('offline', `WhatsApp Web is offline: cannot tell whether ${chat} is on WhatsApp`);
            }
            return failed('not_a_registered_number', `${chat} is not a registered number`);
          }
        }
        const result = await W.chat.sendTextMessage(chat, text, {
          messageId: `true_${chat}_${messageId}`,
          delay: delayMs,
          createChat: true,
          waitForAck: true,
          markIsRead: false, // the gateway marks a chat read only after Kafka has its messages
        });
        const id = typeof result.id === 'string' ? result.id : wid(result.id);
        const outcome = read(() => result.sendMsgResult.messageSendResult) || null;
        return { id, ack: typeof result.ack === 'number' ? result.ack : null, result: outcome, error: null };
      } catch (e) {
        return failed(e && e.code ? String(e.code) : null, String((e && e.message) || e));
      }
    },
    /**
     * Our own messages among the chat's last ``count``: ``[{id, body, t, ack}]``, oldest first
     * (``ack`` -1 for a send WhatsApp refused, 0 while it waits to go out).
     */
    async recentOwn(chat, count) {
      let messages;
      try {
        messages = await window.WPP.chat.getMessages(chat, { count });
      } catch (e) {
        return []; // no such chat yet: nothing was sent to it
      }
      return messages
        .filter((m) => m.id && m.id.fromMe)
        .map((m) => ({
          id: m.id.id,
          body: typeof m.body === 'string' ? m.body : '',
          t: m.t,
          ack: typeof m.ack === 'number' ? m.ack : null,
        }));
    },
    /**
     * LID <-> phone number pairs WA-JS knows for ``ids`` (WPP.contact.getPnLidEntry, which
     * answers @lid from WhatsApp's cache): ``[{lid, phoneNumber}]``, only complete pairs.
     */
    async lidEntries(ids) {
      const contact = window.WPP.contact;
      if (!contact || typeof contact.getPnLidEntry !== 'function') return [];
      const found = [];
      for (const id of ids) {
        try {
          const entry = await contact.getPnLidEntry(id);
          const lid = entry && entry.lid && entry.lid._serialized;
          const phone = entry && entry.phoneNumber && entry.phoneNumber._serialized;
          if (lid && phone) found.push({ lid, phoneNumber: phone });
        } catch (e) {
          /* not a person, or unknown: stays as it is */
        }
      }
      return found;
    },
    /** Pairs from the contact list (ContactModel's lid / phoneNumber), at most ``limit``. */
    async contactLids(limit) {
      const contact = window.WPP.contact;
      if (!contact || typeof contact.list !== 'function') return [];
      const found = [];
      for (const c of await contact.list()) {
        const id = wid(c.id);
        const lid = wid(read(() => c.lid)) || (id && id.endsWith('@lid') ? id : null);
        const phone = wid(read(() => c.phoneNumber)) || (id && id.endsWith('@c.us') ? id : null);
        if (lid && phone) found.push({ lid, phoneNumber: phone });
        if (found.length >= limit) break;
      }
      return found;
    },
    /** Unread messages of every chat, oldest first: what arrived while nobody listened. */
    async unread(perChat) {
      const chats = await window.WPP.chat.list({ onlyWithUnreadMessage: true });
      const found = [];
      for (const c of chats) {
        const count = Math.min(perChat, Math.max(Number(c.unreadCount) || 0, 1));
        const messages = await window.WPP.chat.getMessages(chatId(c), { count });
        for (const m of messages) if (!(m.id && m.id.fromMe)) found.push(plain(m));
      }
      found.sort((a, b) => (a.t || 0) - (b.t || 0));
      return found;
    },
    async markRead(chat) {
      await window.WPP.chat.markIsRead(chat);
      return true;
    },
  };
})();
