// The operator dashboard: plain JS, no build step. Every number and message comes from the
// operator API (/api/...) with the token typed into the login form, kept in localStorage.
// A 401/403 brings the login form back with the API's message. Text from the API is only
// ever set with textContent, never parsed as HTML. It polls every POLL_MS.
"use strict";

(() => {
  const TOKEN_KEY = "wabot.dashboard.token";
  const POLL_MS = 2000;
  const CHART_HEIGHT = 140;

  const $ = (id) => document.getElementById(id);

  let token = localStorage.getItem(TOKEN_KEY) || "";
  let timer = null;
  let polling = false;
  let query = "";
  let openChat = null; // the chat id of the conversation view, or null
  let shownMessages = ""; // what the conversation view shows (to redraw only on change)
  let qrUrl = null;
  const charts = { messages: null, tokens: null, tokenModels: "" };

  class AuthError extends Error {}

  // -- the API -----------------------------------------------------------------------
  async function reason(response) {
    try {
      const body = await response.json();
      return body.message || body.code || `${response.status} ${response.statusText}`;
    } catch (_) {
      return `${response.status} ${response.statusText}`;
    }
  }

  async function call(method, path, body, headers) {
    const init = {
      method,
      cache: "no-store",
      headers: { Authorization: `Bearer ${token}`, ...(headers || {}) },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(await reason(response));
    }
    if (!response.ok) throw new Error(await reason(response));
    return response;
  }

  const getJson = async (path) => (await call("GET", path)).json();

  // -- small helpers -----------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function setText(id, value) {
    const node = $(id);
    if (node.textContent !== value) node.textContent = value;
  }

  const number = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en"));
  const sum = (values) => values.reduce((a, b) => a + b, 0);

  function duration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  }

  function parseTime(value) {
    if (!value) return null;
    // The API's times carry a zone; one without is UTC.
    const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`;
    const ms = Date.parse(zoned);
    return Number.isNaN(ms) ? null : ms;
  }

  // One time format for people, as on the phone: 24-hour HH:MM in the browser's zone, with
  // the date (YYYY-MM-DD) before it when it is not today.
  const pad = (n) => String(n).padStart(2, "0");
  const hhmm = (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const day = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;

  function clock(ms) {
    if (ms === null) return "";
    const date = new Date(ms);
    const today = new Date().toDateString() === date.toDateString();
    return today ? hhmm(date) : `${day(date)} ${hhmm(date)}`;
  }

  function ago(ms) {
    if (ms === null) return "";
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 45) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return day(new Date(ms));
  }

  /** An id as people read it: +<digits> for a phone number, else the id itself. */
  function chatName(id) {
    const [user, server] = id.split("@");
    if (server === "c.us" && /^\d+$/.test(user)) return `+${user}`;
    return id;
  }

  /** The name first (then ``tag``, if any), the id smaller beside it; only the id when no
   * name is known. */
  function nameAndId(name, id, className, tag) {
    return el(
      "span",
      { className },
      el("span", { className: "name", text: name || chatName(id) }),
      tag || null,
      name ? el("span", { className: "id", text: chatName(id) }) : null,
    );
  }

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // works without a secure context, unlike randomUUID
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- login ---------------------------------------------------------------------------
  function showLogin(message) {
    stopPolling();
    $("dash").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token").focus();
  }

  function showDashboard() {
    $("login").hidden = true;
    $("dash").hidden = false;
    route();
  }

  function loggedOut(message) {
    token = "";
    localStorage.removeItem(TOKEN_KEY);
    showLogin(message);
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const typed = $("token").value.trim();
    if (!typed) return;
    $("login-button").disabled = true;
    token = typed;
    try {
      const stats = await getJson("/api/stats");
      localStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      showDashboard();
      renderStats(stats);
      startPolling();
    } catch (error) {
      token = "";
      showLogin(error instanceof AuthError ? error.message : `The API did not answer: ${error.message}`);
    } finally {
      $("login-button").disabled = false;
    }
  });

  $("logout").addEventListener("click", () => loggedOut(""));

  // -- polling -------------------------------------------------------------------------
  function startPolling() {
    stopPolling();
    tick();
  }

  function stopPolling() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  async function tick() {
    if (polling) return;
    polling = true;
    try {
      await refresh();
      $("banner").hidden = true;
      const now = new Date();
      setText("updated", `updated ${hhmm(now)}:${pad(now.getSeconds())}`);
    } catch (error) {
      if (error instanceof AuthError) {
        polling = false;
        loggedOut(error.message);
        return;
      }
      const banner = $("banner");
      banner.textContent = `The API did not answer (${error.message}); trying again.`;
      banner.hidden = false;
    }
    polling = false;
    if (token) timer = setTimeout(tick, POLL_MS);
  }

  async function refresh() {
    const work = [getJson("/api/stats").then(renderStats), refreshGateways()];
    if (openChat === null) work.push(refreshChats());
    else work.push(refreshConversation());
    await Promise.all(work);
  }

  // -- numbers and charts -----------------------------------------------------------------
  function renderStats(stats) {
    const perMinute = stats.messages_per_minute || { in: [], out: [] };
    const inbound = perMinute.in || [];
    const outbound = perMinute.out || [];
    setText("in-hour", number(sum(inbound)));
    setText("in-minute", `${number(inbound[inbound.length - 1] || 0)} this minute`);
    setText("out-hour", number(sum(outbound)));
    setText("out-minute", `${number(outbound[outbound.length - 1] || 0)} this minute`);

    const latency = stats.reply_latency_ms || {};
    setText("latency", `${duration(latency.p50)} / ${duration(latency.p95)}`);
    setText("latency-count", `${number(latency.count || 0)} replies in the last hour`);

    const byModel = stats.tokens_per_hour || {};
    const totals = Object.entries(byModel).map(([model, hours]) => [model, sum(Object.values(hours))]);
    setText("tokens-total", number(sum(totals.map(([, n]) => n))));
    setText(
      "tokens-models",
      totals.length ? totals.map(([model, n]) => `${model} ${number(n)}`).join(" · ") : "no LLM call",
    );

    const drops = Object.entries(stats.limit_drops || {});
    const dropped = sum(drops.map(([, n]) => n));
    setText("drops-total", number(dropped));
    const top = drops.filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])[0];
    setText("drops-top", top ? `most: ${top[0]}` : "none");
    renderDrops(drops);

    const dlq = stats.dlq || {};
    setText("dlq-count", number(dlq.count));
    const latest = dlq.latest || [];
    setText("dlq-sub", dlq.count === null || dlq.count === undefined ? "topic not read yet" : `${latest.length} recent reasons`);
    renderDeadLetters(latest);

    renderGatewayPill(stats.gateway_state);
    drawMessages(inbound, outbound);
    drawTokens(byModel);
  }

  function renderDrops(drops) {
    const rows = drops.map(([why, n]) =>
      el("tr", { className: n ? "" : "zero" }, el("td", { text: why }), el("td", { className: "n", text: number(n) })),
    );
    $("drops").replaceChildren(...rows);
  }

  function renderDeadLetters(latest) {
    const list = $("dlq-list");
    if (!latest.length) {
      list.replaceChildren(el("li", { className: "muted", text: "none seen since the API started" }));
      return;
    }
    list.replaceChildren(
      ...latest.map((d) =>
        el(
          "li",
          {},
          el("span", { className: "where", text: `${d.agent || "?"} · ${d.source_topic || "?"}` }),
          el("span", { className: "why", text: d.reason || "", title: d.reason || "" }),
        ),
      ),
    );
  }

  const STATE_CLASS = { connected: "good", ready: "good", qr: "warn", loading: "warn", starting: "warn" };

  function renderGatewayPill(state) {
    const pill = $("gateway-pill");
    pill.textContent = `gateway ${state || "— never seen"}`;
    pill.className = `pill ${state ? STATE_CLASS[state] || "bad" : ""}`;
  }

  function chartOptions(series, width) {
    return {
      width,
      height: CHART_HEIGHT,
      series: [{}, ...series],
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        {
          stroke: "#6b7380",
          grid: { stroke: "#eef0f3" },
          ticks: { stroke: "#eef0f3" },
          // uPlot's own labels are 12-hour ("6:20pm"): the page's HH:MM instead.
          values: (u, splits) => splits.map((s) => hhmm(new Date(s * 1000))),
        },
        { stroke: "#6b7380", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#eef0f3" }, size: 48 },
      ],
    };
  }

  function chartWidth(box) {
    return Math.max(200, box.clientWidth);
  }

  function drawMessages(inbound, outbound) {
    if (typeof uPlot === "undefined") return;
    const box = $("chart-messages");
    const minute = Math.floor(Date.now() / 60000) * 60;
    const n = Math.max(inbound.length, outbound.length);
    const xs = Array.from({ length: n }, (_, i) => minute - (n - 1 - i) * 60);
    // An empty minute draws no bar (null), not a bar of height 0.
    const data = [xs, inbound.map((v) => v || null), outbound.map((v) => v || null)];
    if (charts.messages === null) {
      // One bar per minute and direction, side by side (in left of the minute, out right).
      const bars = (align) => uPlot.paths.bars({ size: [0.45, 12], align });
      const series = [
        { label: "in", stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.75)", paths: bars(-1), points: { show: false } },
        { label: "out", stroke: "#0f8a5f", fill: "rgba(15, 138, 95, 0.75)", paths: bars(1), points: { show: false } },
      ];
      const options = chartOptions(series, chartWidth(box));
      // Half a minute of room at both ends, for the first and last minute's bars.
      options.scales.x.range = (u, min, max) => [min - 60, max + 60];
      charts.messages = new uPlot(options, data, box);
    } else {
      charts.messages.setData(data);
    }
  }

  const PALETTE = ["#7c3aed", "#ea580c", "#0891b2", "#db2777", "#65a30d", "#4b5563"];

  function drawTokens(byModel) {
    if (typeof uPlot === "undefined") return;
    const box = $("chart-tokens");
    const models = Object.keys(byModel).sort();
    // 24 hourly buckets ending with the current hour; a model's missing hour is 0.
    const hour = Math.floor(Date.now() / 3600000);
    const xs = Array.from({ length: 24 }, (_, i) => (hour - 23 + i) * 3600);
    const columns = models.map((model) => {
      const values = new Array(24).fill(0);
      for (const [at, tokens] of Object.entries(byModel[model])) {
        const ms = parseTime(at);
        if (ms === null) continue;
        const i = Math.floor(ms / 3600000) - (hour - 23);
        if (i >= 0 && i < 24) values[i] += tokens;
      }
      return values;
    });
    const signature = models.join("\n");
    if (charts.tokens !== null && charts.tokenModels !== signature) {
      charts.tokens.destroy();
      charts.tokens = null;
    }
    if (!models.length) {
      if (!box.querySelector(".empty")) box.replaceChildren(el("div", { className: "empty", text: "No LLM call in the last 24 hours." }));
      charts.tokenModels = signature;
      return;
    }
    const data = [xs, ...columns];
    if (charts.tokens === null) {
      box.replaceChildren();
      const series = models.map((model, i) => ({
        label: model,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: true, size: 5 },
      }));
      charts.tokens = new uPlot(chartOptions(series, chartWidth(box)), data, box);
      charts.tokenModels = signature;
    } else {
      charts.tokens.setData(data);
    }
  }

  new ResizeObserver(() => {
    for (const [id, chart] of [["chart-messages", charts.messages], ["chart-tokens", charts.tokens]]) {
      if (chart) chart.setSize({ width: chartWidth($(id)), height: CHART_HEIGHT });
    }
  }).observe($("chart-messages"));

  // -- WhatsApp ---------------------------------------------------------------------------
  async function refreshGateways() {
    const status = await getJson("/api/whatsapp/status");
    const list = $("gateways");
    const gateways = status.gateways || [];
    if (!gateways.length) {
      list.replaceChildren(el("li", { className: "muted", text: "No gateway has reported yet." }));
    } else {
      list.replaceChildren(
        ...gateways.map((g) =>
          el(
            "li",
            {},
            el("span", { className: `pill ${STATE_CLASS[g.state] || "bad"}`, text: g.state || "?" }),
            el("span", { text: g.account_id || g.gateway }),
            el("span", { className: "muted", text: [g.reason, ago(parseTime(g.at))].filter(Boolean).join(" · ") }),
          ),
        ),
      );
    }
    const waiting = gateways.some((g) => g.qr_available);
    if (!waiting) {
      $("qr-box").hidden = true;
      return;
    }
    let response;
    try {
      response = await call("GET", "/api/whatsapp/qr");
    } catch (error) {
      if (error instanceof AuthError) throw error;
      $("qr-box").hidden = true; // scanned or expired between the two calls
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    $("qr").src = url;
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = url;
    $("qr-box").hidden = false;
  }

  // -- conversations --------------------------------------------------------------------
  async function refreshChats() {
    const asked = query;
    const path = `/api/chats?limit=50${asked ? `&q=${encodeURIComponent(asked)}` : ""}`;
    const page = await getJson(path);
    if (asked !== query || openChat !== null) return; // the search changed meanwhile
    const items = page.chats.map((chat) => {
      const last = parseTime(chat.last_message_at);
      const waiting = parseTime(chat.last_inbound_at) > (parseTime(chat.last_outbound_at) || 0);
      const button = el(
        "button",
        { type: "button", title: chat.chat_id },
        el("span", { className: "who" }, nameAndId(chat.name, chat.chat_id, "title", chat.is_group ? el("span", { className: "tag", text: "group" }) : null)),
        el("span", { className: "when", text: ago(last) }),
        el("span", { className: "meta", text: waiting ? "last: inbound" : "last: outbound" }),
      );
      button.addEventListener("click", () => {
        location.hash = `chat=${encodeURIComponent(chat.chat_id)}`;
      });
      return el("li", { dataset: { chatId: chat.chat_id } }, button);
    });
    $("chats").replaceChildren(...items);
    const empty = $("chats-empty");
    empty.textContent = asked ? "No conversation has a message with this text." : "No conversation yet.";
    empty.hidden = items.length > 0;
  }

  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = $("search").value.trim();
      refreshChats().catch(handleActionError);
    }, 250);
  });

  function route() {
    const match = /^#chat=(.+)$/.exec(location.hash);
    const chat = match ? decodeURIComponent(match[1]) : null;
    if (chat === openChat && ($("chat-view").hidden === (chat === null))) return;
    openChat = chat;
    shownMessages = "";
    $("chats-view").hidden = chat !== null;
    $("chat-view").hidden = chat === null;
    note("");
    if (chat === null) {
      refreshChats().catch(handleActionError);
      return;
    }
    renderTitle(null, chat);
    $("messages").replaceChildren();
    $("chat-state").textContent = "";
    refreshConversation().catch(handleActionError);
  }

  window.addEventListener("hashchange", () => {
    if (token) route();
  });
  $("back").addEventListener("click", () => {
    history.pushState(null, "", location.pathname);
    route();
  });

  async function refreshConversation() {
    const chat = openChat;
    const id = encodeURIComponent(chat);
    let page;
    let profile;
    try {
      [page, profile] = await Promise.all([
        getJson(`/api/chats/${id}/messages?limit=100`),
        getJson(`/api/chats/${id}/profile`),
      ]);
    } catch (error) {
      if (error instanceof AuthError) throw error;
      if (chat === openChat) note(error.message, true, "load"); // an unknown chat, say
      return;
    }
    if ($("chat-note").dataset.source === "load") note("");
    if (chat !== openChat) return;
    renderTitle(page.chat_name, chat);
    renderProfile(profile);
    renderMessages(page.messages);
  }

  function renderTitle(name, chat) {
    setText("chat-title", name || chatName(chat));
    setText("chat-sub", name ? `${chatName(chat)} · ${chat}` : chat);
  }

  function renderProfile(profile) {
    const pill = $("chat-state");
    const until = parseTime(profile.paused_until);
    if (until !== null && until > Date.now()) {
      pill.textContent = `Paused until ${clock(until)}`;
      pill.className = "pill warn";
      pill.dataset.state = "paused";
    } else if (profile.enabled === false) {
      pill.textContent = "Bot off in this chat";
      pill.className = "pill bad";
      pill.dataset.state = "disabled";
    } else {
      pill.textContent = "Bot answering";
      pill.className = "pill good";
      pill.dataset.state = "active";
    }
  }

  function renderMessages(messages) {
    const signature = JSON.stringify(messages);
    if (signature === shownMessages) return;
    shownMessages = signature;
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const items = messages
      .slice()
      .reverse()
      .map((m) => {
        const at = parseTime(m.at);
        if (m.direction === "in" && m.event && m.event !== "message") {
          const what = m.event === "reaction" ? `reacted ${m.text || ""}` : m.event === "revoke" ? "deleted a message" : `${m.event}: ${m.text || ""}`;
          return el("li", { className: "event", dataset: { id: m.id } }, el("span", { text: `${what} · ${clock(at)}` }));
        }
        const body = m.text !== null && m.text !== undefined && m.text !== "" ? m.text : `[${m.type || "message"}]`;
        const meta = [clock(at)];
        if (m.direction === "out") {
          meta.push(m.kind || "out");
          if (m.delivery_status) meta.push(m.delivery_status);
          if (m.failure_reason) meta.push(m.failure_reason);
        }
        const className = `${m.direction} ${m.kind === "manual" ? "manual" : ""}`.trim();
        // In a group, who wrote: their name first, their id beside it.
        const group = openChat.endsWith("@g.us");
        const from = group && m.direction === "in" && m.sender_id ? nameAndId(m.sender_name, m.sender_id, "from") : null;
        return el(
          "li",
          { className, dataset: { id: m.id, kind: m.kind || "" } },
          from,
          el("span", { className: "text", text: body }),
          el("span", { className: `meta ${m.delivery_status === "failed" ? "failed" : ""}`, text: meta.join(" · ") }),
        );
      });
    if (!items.length) items.push(el("li", { className: "event", text: "No message yet." }));
    list.replaceChildren(...items);
    if (atBottom || list.dataset.scrolled !== openChat) {
      list.scrollTop = list.scrollHeight;
      list.dataset.scrolled = openChat;
    }
  }

  function note(message, isError, source) {
    const node = $("chat-note");
    node.dataset.source = source || "";
    node.textContent = message;
    node.className = `note small ${isError ? "error" : ""}`;
    node.hidden = !message;
  }

  function handleActionError(error) {
    if (error instanceof AuthError) loggedOut(error.message);
    else note(error.message, true);
  }

  async function action(button, work) {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      handleActionError(error);
    } finally {
      button.disabled = false;
    }
  }

  $("pause").addEventListener("click", () =>
    action($("pause"), async () => {
      const minutes = Number($("pause-minutes").value);
      const done = await (await call("POST", `/api/chats/${encodeURIComponent(openChat)}/pause`, { minutes })).json();
      renderProfile({ paused_until: done.paused_until, enabled: true });
      note(`The bot stays quiet here until ${clock(parseTime(done.paused_until))}.`);
    }),
  );

  $("resume").addEventListener("click", () =>
    action($("resume"), async () => {
      await call("POST", `/api/chats/${encodeURIComponent(openChat)}/resume`);
      renderProfile({ paused_until: null, enabled: true });
      note("The bot answers here again.");
    }),
  );

  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("send-text").value;
    if (!text.trim()) return;
    action($("send"), async () => {
      const done = await (
        await call("POST", "/api/messages", { chat_id: openChat, text }, { "Idempotency-Key": randomKey() })
      ).json();
      $("send-text").value = "";
      note(done.state === "produced" ? "Sent." : `Held until ${clock(parseTime(done.send_at))}.`);
      await refreshConversation();
    });
  });

  $("send-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });

  // -- start ---------------------------------------------------------------------------
  if (token) {
    showDashboard();
    startPolling();
  } else {
    showLogin("");
  }
})();
