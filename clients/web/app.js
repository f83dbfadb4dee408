// The web client: plain JavaScript modules, no build step. It talks to the BFF only:
// JSON over HTTP to act, one WebSocket (/v1/stream/ws) to receive and send.
//
// Exactly once on screen: every message is keyed by its id, and the stream resumes from the
// cursor of the last event this page handled (kept per user in localStorage), so a reconnect
// after the network dropped yields each missed message once.

const $ = (id) => document.getElementById(id);
const SESSION = "chat.session";
const NAMES = "chat.names";
const PAGE = 30;

let session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
let socket = null;
let online = false;
let retryDelay = 500;
let reconnectTimer = null;
const chats = new Map(); // chat_id -> summary from GET /v1/chats
let current = null; // the open chat: {id, oldest, hasMore, loading}
const pending = new Map(); // client_message_id -> {chatId, body}
// Per chat, how far the other members got: {delivered, read} (BigInt), from receipt events.
const peerMarks = new Map();
const typingNow = new Map(); // user_id -> {chatId, until (ms)} of the others typing
const presence = new Map(); // user_id -> {online, last_seen_ms}
let typingSentAt = 0;
let deliveredTimer = null;
const deliveredMarks = new Map(); // chat_id -> newest message id received, to mark delivered

// --- HTTP ---------------------------------------------------------------------------------

async function call(method, path, body, retried = false) {
  const headers = { "Content-Type": "application/json" };
  if (session) headers.Authorization = `Bearer ${session.access_token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && session && !retried && path !== "/v1/sessions/refresh") {
    if (await refresh()) return call(method, path, body, true);
    showLogin("Your session has ended; log in again.");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && data.detail) || response.statusText);
  return data;
}

async function refresh() {
  if (!session) return false;
  try {
    const response = await fetch("/v1/sessions/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh_token }),
    });
    if (!response.ok) return false;
    keepSession({ ...session, ...(await response.json()) });
    return true;
  } catch {
    return false;
  }
}

function keepSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION);
}

// --- names: users are ids on the wire; the names this page learned are kept locally -------

function names() {
  return JSON.parse(localStorage.getItem(NAMES) || "{}");
}

function learnName(userId, username) {
  const known = names();
  known[userId] = username;
  localStorage.setItem(NAMES, JSON.stringify(known));
}

function chatName(chat) {
  if (chat.kind === "group") return (chat.name || "group") + (chat.member === false ? " (left)" : "");
  const peers = chat.member_ids.filter((id) => id !== session.user_id);
  const known = names();
  return peers.map((id) => known[id] || `user …${id.slice(-6)}`).join(", ") || "yourself";
}

// --- views --------------------------------------------------------------------------------

function showLogin(message = "") {
  closeSocket();
  keepSession(null);
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  setBanner(false);
}

async function showApp() {
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").textContent = session.username;
  await loadChats();
  connect();
}

function setBanner(show) {
  $("offline-banner").hidden = !show;
}

function renderChats() {
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of chats.values()) {
    const item = document.createElement("li");
    item.className = "chat-item" + (current && current.id === chat.chat_id ? " active" : "");
    item.dataset.chatId = chat.chat_id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = chatName(chat);
    const unread = document.createElement("span");
    unread.className = "unread";
    const count = current && current.id === chat.chat_id ? 0 : chat.unread_count;
    unread.textContent = count ? String(count) : "";
    const preview = document.createElement("span");
    preview.className = "preview";
    preview.textContent = chat.last_preview || "";
    item.append(name, unread, preview);
    item.addEventListener("click", () => openChat(chat.chat_id));
    list.append(item);
  }
}

function bubble(message, isPending = false) {
  const item = document.createElement("li");
  // A change to a group (someone added, the group renamed...) is a line of its own.
  const mine = message.sender_id === session.user_id && !message.change;
  item.className = "message" + (mine ? " mine" : "") + (message.change ? " change" : "");
  if (isPending) item.classList.add("pending");
  if (message.message_id) item.dataset.messageId = message.message_id;
  item.dataset.clientId = message.client_message_id;
  item.dataset.senderId = message.sender_id;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.deleted ? "This message was deleted" : message.body;
  if (message.deleted) item.classList.add("deleted");
  item.append(text);
  const reactions = document.createElement("span");
  reactions.className = "reactions";
  item.reactions = new Map((message.reactions || []).map((r) => [r.emoji, { count: r.count, mine: r.mine }]));
  item.append(reactions);
  const time = document.createElement("time");
  time.dataset.at = message.created_at_ms
    ? new Date(message.created_at_ms).toLocaleTimeString()
    : "sending…";
  item.edited = Boolean(message.edited_at_ms);
  item.append(time);
  if (message.message_id && !message.change && !message.deleted) {
    item.addEventListener("dblclick", () => react(item, "👍"));
    if (mine) item.addEventListener("contextmenu", (e) => amendMenu(e, item));
  }
  refreshBubble(item);
  return item;
}

// The line under a bubble: time, "edited", and on your own messages ✓ / ✓✓ as far as the
// other members got; reactions with their counts above it.
function refreshBubble(item) {
  const time = item.querySelector("time");
  let meta = time.dataset.at + (item.edited ? " · edited" : "");
  if (item.classList.contains("mine") && item.dataset.messageId && current) {
    const marks = peerMarks.get(current.id);
    const id = BigInt(item.dataset.messageId);
    if (marks && marks.read >= id) meta += " ✓✓";
    else if (marks && marks.delivered >= id) meta += " ✓";
  }
  time.textContent = meta;
  const shownReactions = [...item.reactions].filter(([, r]) => r.count > 0);
  item.querySelector(".reactions").textContent = shownReactions
    .map(([emoji, r]) => `${emoji} ${r.count}`)
    .join("  ");
}

function react(item, emoji) {
  const mineAlready = item.reactions.get(emoji)?.mine;
  const path = `/v1/chats/${encodeURIComponent(current.id)}/messages/${item.dataset.messageId}/reactions/${encodeURIComponent(emoji)}`;
  call(mineAlready ? "DELETE" : "PUT", path, undefined).catch(() => {});
}

function amendMenu(event, item) {
  event.preventDefault();
  const text = prompt("Edit the message (empty: delete it)", item.querySelector(".text").textContent);
  if (text === null) return;
  const path = `/v1/chats/${encodeURIComponent(current.id)}/messages/${item.dataset.messageId}`;
  const done = text.trim() ? call("PATCH", path, { body: text.trim() }) : call("DELETE", path, undefined);
  done.catch((error) => alert(error.message));
}

// An edit, deletion or reaction from the stream, applied to the bubble it is about.
function amended(message) {
  const a = message.amendment;
  if (!current || current.id !== message.chat_id) return;
  const item = shown(a.message_id);
  if (!item) return;
  if (a.action === "edited") {
    item.querySelector(".text").textContent = message.body;
    item.edited = true;
  } else if (a.action === "deleted") {
    item.querySelector(".text").textContent = "This message was deleted";
    item.classList.add("deleted");
    item.reactions.clear();
  } else {
    const r = item.reactions.get(a.emoji) || { count: 0, mine: false };
    const adding = a.action === "reaction_added";
    const byMe = message.sender_id === session.user_id;
    // Adding twice counts once: a user's own state decides (known for the caller only).
    if (byMe && r.mine === adding) return;
    r.count = Math.max(0, r.count + (adding ? 1 : -1));
    if (byMe) r.mine = adding;
    item.reactions.set(a.emoji, r);
  }
  refreshBubble(item);
}

function refreshTicks() {
  for (const item of $("messages").querySelectorAll(".message.mine[data-message-id]")) {
    refreshBubble(item);
  }
}

function showTyping() {
  const now = Date.now();
  const names = [];
  for (const [userId, t] of typingNow) {
    if (t.until <= now) typingNow.delete(userId);
    else if (current && t.chatId === current.id) names.push(nameOf(userId));
  }
  $("typing").textContent = names.length ? `${names.join(", ")} typing…` : "";
}
setInterval(showTyping, 1000);

function nameOf(userId) {
  return names()[userId] || userId;
}

function showPresence() {
  const chat = current && chats.get(current.id);
  const peer = chat && chat.kind === "direct" && chat.member_ids.find((id) => id !== session.user_id);
  const p = peer && presence.get(peer);
  $("presence").textContent = !p
    ? ""
    : p.online
      ? "online"
      : p.last_seen_ms
        ? `last seen ${new Date(p.last_seen_ms).toLocaleTimeString()}`
        : "offline";
}

async function loadPresence(chatId) {
  const chat = chats.get(chatId);
  const peer = chat && chat.kind === "direct" && chat.member_ids.find((id) => id !== session.user_id);
  if (!peer) return showPresence();
  try {
    const found = await call("GET", `/v1/presence?user_ids=${peer}`);
    for (const p of found.presences) presence.set(p.user_id, p);
  } catch {
    // Presence is a courtesy: the chat works without it.
  }
  showPresence();
}

// "Received" marks for what arrives, once a second at most per chat.
function markDelivered(chatId, messageId) {
  const known = deliveredMarks.get(chatId);
  if (!known || BigInt(messageId) > BigInt(known)) deliveredMarks.set(chatId, messageId);
  if (deliveredTimer) return;
  deliveredTimer = setTimeout(() => {
    deliveredTimer = null;
    for (const [chat, id] of deliveredMarks) {
      call("POST", `/v1/chats/${encodeURIComponent(chat)}/delivered`, { message_id: id }).catch(() => {});
    }
    deliveredMarks.clear();
  }, 1000);
}

function typing() {
  if (!current || Date.now() - typingSentAt < 2000) return;
  typingSentAt = Date.now();
  call("POST", `/v1/chats/${encodeURIComponent(current.id)}/typing`, {}).catch(() => {});
}

function shown(messageId) {
  return $("messages").querySelector(`[data-message-id="${messageId}"]`);
}

// --- chats and history --------------------------------------------------------------------

async function loadChats() {
  const data = await call("GET", "/v1/chats");
  chats.clear();
  for (const chat of data.chats) chats.set(chat.chat_id, chat);
  renderChats();
}

function markRead(chatId) {
  const chat = chats.get(chatId);
  if (!chat || !chat.last_message_id) return;
  chat.unread_count = 0;
  // Best effort: a failed mark only leaves the count on the other devices.
  call("POST", `/v1/chats/${encodeURIComponent(chatId)}/read`, { message_id: chat.last_message_id }).catch(() => {});
}

async function openChat(chatId) {
  current = { id: chatId, oldest: null, hasMore: true, loading: false };
  const chat = chats.get(chatId);
  $("chat-title").textContent = chat ? chatName(chat) : chatId;
  $("messages").replaceChildren();
  $("composer").disabled = false;
  $("chat-view").classList.add("in-chat");
  renderChats();
  showTyping();
  loadPresence(chatId);
  await olderPage();
  markRead(chatId);
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
  for (const [clientId, item] of pending) {
    if (item.chatId === chatId) $("messages").append(bubble(item.message, true));
  }
  $("composer").focus();
}

async function olderPage() {
  if (!current || current.loading || !current.hasMore) return;
  current.loading = true;
  const chatId = current.id;
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (current.oldest) query.set("before", current.oldest);
  try {
    const page = await call("GET", `/v1/chats/${encodeURIComponent(chatId)}/messages?${query}`);
    if (!current || current.id !== chatId) return;
    const box = $("messages");
    const before = box.scrollHeight;
    for (const message of page.messages) {
      // Newest first: each goes above what is shown.
      if (!shown(message.message_id)) box.prepend(bubble(message));
      current.oldest = message.message_id;
    }
    current.hasMore = page.has_more;
    box.scrollTop += box.scrollHeight - before;
  } finally {
    if (current) current.loading = false;
  }
}

function received(message) {
  if (message.sender_id !== session.user_id) markDelivered(message.chat_id, message.message_id);
  if (message.amendment) return amended(message);
  typingNow.delete(message.sender_id); // a message ends its sender's typing
  showTyping();
  const chat = chats.get(message.chat_id);
  if (!chat) {
    loadChats(); // a chat this page did not know yet
  } else {
    if (message.change) chat.name = message.change.name;
    chat.last_preview = message.body.slice(0, 80);
    chat.last_message_id = message.message_id;
    if (message.sender_id !== session.user_id && !(current && current.id === chat.chat_id)) {
      chat.unread_count += 1;
    }
    chats.delete(chat.chat_id);
    chats.set(chat.chat_id, chat);
    // Newest first: move it to the top.
    const ordered = [chat, ...[...chats.values()].filter((c) => c !== chat)];
    chats.clear();
    for (const c of ordered) chats.set(c.chat_id, c);
    renderChats();
  }
  if (!current || current.id !== message.chat_id || shown(message.message_id)) return;
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const mine = box.querySelector(`.pending[data-client-id="${CSS.escape(message.client_message_id)}"]`);
  if (mine && message.sender_id === session.user_id) mine.replaceWith(bubble(message));
  else box.append(bubble(message));
  pending.delete(message.client_message_id);
  if (atBottom) box.scrollTop = box.scrollHeight;
  if (message.sender_id !== session.user_id) markRead(message.chat_id); // seen: read
}

// --- sending: over the socket when it is open, else HTTP; the same key either way ---------

function send(chatId, body) {
  const clientId = crypto.randomUUID();
  const message = { chat_id: chatId, sender_id: session.user_id, body, client_message_id: clientId };
  pending.set(clientId, { chatId, body, message });
  $("messages").append(bubble(message, true));
  $("messages").scrollTop = $("messages").scrollHeight;
  deliver(clientId);
}

function deliver(clientId) {
  const item = pending.get(clientId);
  if (!item) return;
  const frame = { chat_id: item.chatId, client_message_id: clientId, body: item.body };
  if (socket && socket.readyState === WebSocket.OPEN && online) {
    socket.send(JSON.stringify({ type: "send", request_id: clientId, ...frame }));
    return;
  }
  call("POST", `/v1/chats/${encodeURIComponent(item.chatId)}/messages`, frame)
    .then((sent) => accepted(clientId, sent))
    .catch(() => {}); // still pending: sent again when the stream is back
}

function accepted(clientId, sent) {
  const item = pending.get(clientId);
  if (!item) return;
  const node = $("messages").querySelector(`.pending[data-client-id="${CSS.escape(clientId)}"]`);
  if (node && !shown(sent.message_id)) {
    node.replaceWith(
      bubble({ ...item.message, message_id: sent.message_id, created_at_ms: sent.created_at_ms }),
    );
  } else if (node) {
    node.remove();
  }
  pending.delete(clientId);
}

// --- the live stream ----------------------------------------------------------------------

function cursorKey() {
  return `chat.cursor.${session.user_id}`;
}

function connect() {
  clearTimeout(reconnectTimer);
  if (!session) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${scheme}${location.host}/v1/stream/ws`);
  socket = ws;
  ws.onopen = () => {
    ws.send(
      JSON.stringify({
        type: "hello",
        access_token: session.access_token,
        cursor: localStorage.getItem(cursorKey()) || "",
      }),
    );
  };
  ws.onmessage = (frame) => handle(JSON.parse(frame.data));
  ws.onclose = async (closed) => {
    if (socket !== ws) return;
    online = false;
    setBanner(true);
    if (closed.code === 4401 && !(await refresh())) {
      showLogin("Your session has ended; log in again.");
      return;
    }
    reconnectTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 8000);
  };
}

function closeSocket() {
  clearTimeout(reconnectTimer);
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close();
  }
  online = false;
}

function handle(event) {
  switch (event.type) {
    case "message":
      received(event.message);
      break;
    case "caught_up":
      online = true;
      retryDelay = 500;
      setBanner(false);
      loadChats();
      for (const clientId of pending.keys()) deliver(clientId);
      break;
    case "receipt": {
      const r = event.receipt;
      if (r.user_id !== session.user_id) {
        // Another member got this far: ticks on your messages.
        const marks = peerMarks.get(r.chat_id) || { delivered: 0n, read: 0n };
        if (BigInt(r.delivered_up_to) > marks.delivered) marks.delivered = BigInt(r.delivered_up_to);
        if (BigInt(r.read_up_to) > marks.read) marks.read = BigInt(r.read_up_to);
        peerMarks.set(r.chat_id, marks);
        if (current && current.id === r.chat_id) refreshTicks();
        break;
      }
      // Read on another device (or here): what it read is no longer unread anywhere.
      const chat = chats.get(r.chat_id);
      if (chat && BigInt(r.read_up_to) >= BigInt(chat.last_message_id || "0")) {
        chat.unread_count = 0;
        renderChats();
      }
      break;
    }
    case "typing": {
      const t = event.typing;
      if (t.stopped) typingNow.delete(t.user_id);
      else typingNow.set(t.user_id, { chatId: t.chat_id, until: t.expires_at_ms });
      showTyping();
      break;
    }
    case "presence":
      presence.set(event.presence.user_id, event.presence);
      showPresence();
      break;
    case "resync_required":
      loadChats();
      if (current) openChat(current.id);
      break;
    case "sent":
      accepted(event.request_id, event);
      break;
    case "send_failed":
      if (event.status !== 503) {
        const node = $("messages").querySelector(`.pending[data-client-id="${CSS.escape(String(event.request_id))}"]`);
        if (node) node.querySelector("time").textContent = `not sent: ${event.detail}`;
        pending.delete(event.request_id);
      }
      break;
    default:
      break; // errors and resume_required: the socket closes next and we reconnect
  }
  // The cursor moves only once the event is handled: a reconnect resumes after it.
  if (event.cursor && ["message", "caught_up", "resync_required", "receipt"].includes(event.type)) {
    localStorage.setItem(cursorKey(), event.cursor);
  }
}

// --- wiring -------------------------------------------------------------------------------

async function authenticate(register) {
  const username = $("username").value.trim();
  const password = $("password").value;
  $("login-error").textContent = "";
  try {
    if (register) await call("POST", "/v1/users", { username, password });
    const opened = await call("POST", "/v1/sessions", { username, password });
    keepSession({ ...opened, username: username.toLowerCase() });
    learnName(opened.user_id, username.toLowerCase());
    await showApp();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  authenticate(false);
});
$("register").addEventListener("click", () => authenticate(true));
$("logout").addEventListener("click", async () => {
  try {
    await call("DELETE", "/v1/sessions/current");
  } finally {
    showLogin();
  }
});
$("new-chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const username = $("new-chat-username").value.trim();
  $("new-chat-error").textContent = "";
  try {
    const chat = await call("POST", "/v1/chats/direct", { peer_username: username });
    const peer = chat.member_ids.find((id) => id !== session.user_id) || session.user_id;
    learnName(peer, username.toLowerCase());
    $("new-chat-username").value = "";
    await loadChats();
    if (!chats.has(chat.chat_id)) {
      chats.set(chat.chat_id, { ...chat, unread_count: 0, last_preview: "" });
    }
    await openChat(chat.chat_id);
  } catch (error) {
    $("new-chat-error").textContent = error.message;
  }
});
$("composer").addEventListener("input", typing);
$("composer").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
  e.preventDefault();
  const body = $("composer").value.trim();
  if (!body || !current) return;
  $("composer").value = "";
  if (typingSentAt) {
    typingSentAt = 0;
    call("POST", `/v1/chats/${encodeURIComponent(current.id)}/typing`, { stopped: true }).catch(() => {});
  }
  send(current.id, body);
});
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 60) olderPage();
});
$("back").addEventListener("click", () => {
  current = null;
  $("chat-view").classList.remove("in-chat");
  renderChats();
});
window.addEventListener("offline", () => setBanner(true));
window.addEventListener("online", () => {
  if (!online) connect();
});

if (session) showApp().catch(() => showLogin());
else showLogin();
