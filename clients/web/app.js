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
// Whom the user blocked (GET /v1/blocks): in groups, what they say is hidden here.
const blocked = new Set();
const asking = new Set(); // user ids whose profiles are being asked for
const profiled = new Set(); // user ids whose profiles this page load has learned
const wanted = new Set(); // user ids to ask for in the next batch
let askTimer = null;
const avatarIds = new Map(); // user_id -> their avatar_id (null: none)
const avatarLinks = new Map(); // user_id -> {avatarId, url (a promise), expires}

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
  for (const node of document.querySelectorAll(`[data-name-of="${userId}"]`)) node.textContent = username;
}

// Each user's profile (name and picture) is asked for once per page load, in batches of up
// to 200 (GET /v1/profiles): what asks comes in bursts, a page of history or the chat list.
// A name learned before shows meanwhile; profile events keep them current.
function askNames(userIds) {
  for (const userId of userIds) {
    if (userId && !profiled.has(userId) && !asking.has(userId)) wanted.add(userId);
  }
  if (wanted.size && !askTimer) askTimer = setTimeout(askProfiles, 0);
}

async function askProfiles() {
  askTimer = null;
  const ids = [...wanted].slice(0, 200);
  for (const userId of ids) {
    wanted.delete(userId);
    asking.add(userId);
  }
  try {
    const found = await call("GET", `/v1/profiles?user_ids=${ids.join(",")}`);
    for (const p of found.profiles) learnProfile(p);
    for (const userId of ids) profiled.add(userId); // who does not exist is not asked again
    renderChats();
    if (current) $("chat-title").textContent = chatName(chats.get(current.id) || { kind: "group", name: "" });
  } catch {
    // Asked again the next time they are shown.
  } finally {
    for (const userId of ids) asking.delete(userId);
    if (wanted.size && !askTimer) askTimer = setTimeout(askProfiles, 0);
  }
}

function learnProfile(p) {
  profiled.add(p.user_id);
  learnName(p.user_id, p.display_name || p.username);
  const avatarId = p.avatar_id || null;
  const changed = avatarIds.get(p.user_id) !== avatarId;
  avatarIds.set(p.user_id, avatarId);
  if (changed) {
    avatarUrl(p.user_id)
      .then((url) => {
        for (const node of document.querySelectorAll(`img[data-avatar-of="${p.user_id}"]`)) paint(node, url);
      })
      .catch(() => {});
  }
}

// A picture's link (GET /v1/users/{id}/avatar) is asked once per avatar and kept until it
// nears its expiry; an image already shown keeps its bytes after that.
function avatarUrl(userId) {
  const avatarId = avatarIds.get(userId);
  if (!avatarId) return Promise.resolve(null);
  const cached = avatarLinks.get(userId);
  if (cached && cached.avatarId === avatarId && cached.expires > Date.now() + 30000) return cached.url;
  const entry = { avatarId, expires: Infinity };
  entry.url = call("GET", `/v1/users/${userId}/avatar`).then((link) => {
    entry.expires = link.expires_at_ms;
    return link.url;
  });
  entry.url.catch(() => {
    if (avatarLinks.get(userId) === entry) avatarLinks.delete(userId);
  });
  avatarLinks.set(userId, entry);
  return entry.url;
}

function paint(img, url) {
  if (url) img.src = url;
  else img.removeAttribute("src");
  img.hidden = !url;
}

function avatarNode(userId) {
  const img = document.createElement("img");
  img.className = "avatar";
  img.alt = "";
  img.dataset.avatarOf = userId;
  img.hidden = true;
  if (avatarIds.get(userId)) avatarUrl(userId).then((url) => paint(img, url)).catch(() => {});
  askNames([userId]);
  return img;
}

function nameNode(userId, tag = "span") {
  const node = document.createElement(tag);
  node.dataset.nameOf = userId;
  node.textContent = nameOf(userId);
  askNames([userId]);
  return node;
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
  $("me").textContent = names()[session.user_id] || session.username;
  $("me").dataset.nameOf = session.user_id;
  $("my-avatar").dataset.avatarOf = session.user_id;
  askNames([session.user_id]);
  await Promise.all([loadChats(), loadBlocked()]);
  connect();
}

async function loadBlocked() {
  try {
    const found = await call("GET", "/v1/blocks");
    blocked.clear();
    for (const b of found.blocked) blocked.add(b.user_id);
  } catch {
    // Without the list nothing is hidden; the server still refuses what a block forbids.
  }
}

function setBanner(show) {
  $("offline-banner").hidden = !show;
}

function renderChats() {
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of chats.values()) {
    if (chat.kind === "direct") askNames(chat.member_ids.filter((id) => id !== session.user_id));
    const item = document.createElement("li");
    item.className = "chat-item" + (current && current.id === chat.chat_id ? " active" : "");
    item.dataset.chatId = chat.chat_id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = chatName(chat);
    const peer = chat.kind === "direct" && chat.member_ids.find((id) => id !== session.user_id);
    if (peer) name.prepend(avatarNode(peer));
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
  const inGroup = message.chat_id && message.chat_id.startsWith("g:");
  if (inGroup && !mine && !message.change) {
    const who = nameNode(message.sender_id, "b");
    who.className = "who";
    item.append(avatarNode(message.sender_id), who, document.createElement("br"));
  }
  const text = document.createElement("span");
  text.className = "text";
  // Someone the user blocked, in a group they share: the words are not shown (GET /v1/blocks).
  const hidden = inGroup && !mine && blocked.has(message.sender_id) && !message.change;
  text.textContent = message.deleted
    ? "This message was deleted"
    : hidden
      ? "Message from someone you blocked"
      : message.body;
  if (message.deleted) item.classList.add("deleted");
  if (hidden) item.classList.add("blocked");
  item.append(text);
  if (!message.deleted && !hidden && message.message_id) {
    for (const file of message.attachments || []) item.append(attachmentNode(message, file));
  }
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

// An image is shown in place; any other file is a link. Both ask the BFF for a short-lived
// link to the object store when they are shown or clicked (503: recorded in a moment).
function attachmentNode(message, file) {
  const path =
    `/v1/chats/${encodeURIComponent(message.chat_id)}/messages/${message.message_id}` +
    `/attachments/${file.attachment_id}`;
  if (file.content_type.startsWith("image/")) {
    const img = document.createElement("img");
    img.className = "file";
    img.alt = file.name;
    if (file.width && file.height) img.style.aspectRatio = `${file.width} / ${file.height}`;
    fileLink(path).then((url) => { img.src = url; }).catch(() => { img.alt = `${file.name} (unavailable)`; });
    return img;
  }
  const link = document.createElement("a");
  link.className = "file";
  link.href = "#";
  link.textContent = `📎 ${file.name} (${Math.max(1, Math.round(file.size / 1024))} KiB)`;
  link.addEventListener("click", async (e) => {
    e.preventDefault();
    try {
      window.open(await fileLink(path), "_blank", "noopener");
    } catch (error) {
      alert(error.message);
    }
  });
  return link;
}

async function fileLink(path) {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await call("GET", path)).url;
    } catch (error) {
      if (attempt >= 20 || !/recorded/.test(error.message)) throw error;
      await new Promise((done) => setTimeout(done, 300));
    }
  }
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
  // A chat this page learned from the stream before history stored it stays listed.
  const listed = new Set(data.chats.map((c) => c.chat_id));
  const early = [...chats.values()].filter((c) => c.provisional && !listed.has(c.chat_id));
  chats.clear();
  for (const chat of [...early, ...data.chats]) chats.set(chat.chat_id, chat);
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
  showTools();
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
    // A chat this page did not know yet: listed at once, then as history has it.
    const direct = message.chat_id.startsWith("d:");
    chats.set(message.chat_id, {
      chat_id: message.chat_id,
      kind: direct ? "direct" : "group",
      name: message.change ? message.change.name : "",
      member_ids: direct ? message.chat_id.split(":").slice(1) : [],
      unread_count: message.sender_id === session.user_id ? 0 : 1,
      last_preview: message.body.slice(0, 80),
      last_message_id: message.message_id,
      member: true,
      provisional: true,
    });
    renderChats();
    loadChats();
  } else {
    if (message.change) {
      chat.name = message.change.name;
      if (current && current.id === chat.chat_id) $("chat-title").textContent = chatName(chat);
    }
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

function send(chatId, body, attachments = []) {
  const clientId = crypto.randomUUID();
  const message = { chat_id: chatId, sender_id: session.user_id, body, client_message_id: clientId };
  pending.set(clientId, { chatId, body, message, attachments });
  $("messages").append(bubble(message, true));
  $("messages").scrollTop = $("messages").scrollHeight;
  deliver(clientId);
}

function deliver(clientId) {
  const item = pending.get(clientId);
  if (!item) return;
  const frame = { chat_id: item.chatId, client_message_id: clientId, body: item.body };
  if (item.attachments.length) frame.attachments = item.attachments;
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
  if (item.attachments.length) {
    // Only the stream's event says what the files are: it takes the pending bubble's place.
    pending.delete(clientId);
    return;
  }
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
    case "profile": {
      // A contact changed their display name or picture: shown everywhere at once.
      learnProfile(event.profile);
      renderChats();
      break;
    }
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

// --- files: straight to the object store with a presigned URL, then a message naming them --

async function sendFile(file) {
  if (!current) return;
  const chatId = current.id;
  $("composer-error").textContent = "";
  try {
    const bytes = await file.arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const sha256 = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    const type = file.type || "application/octet-stream";
    let width = 0;
    let height = 0;
    if (type.startsWith("image/")) {
      try {
        const bitmap = await createImageBitmap(file);
        [width, height] = [bitmap.width, bitmap.height];
      } catch {
        // Not an image the browser can decode: sent without a size.
      }
    }
    const upload = await call("POST", `/v1/chats/${encodeURIComponent(chatId)}/attachments`, {
      name: file.name,
      size: file.size,
      content_type: type,
    });
    const put = await fetch(upload.url, { method: upload.method, headers: upload.headers, body: bytes });
    if (!put.ok) throw new Error(`the upload was refused (${put.status})`);
    const caption = $("composer").value.trim();
    $("composer").value = "";
    send(chatId, caption || file.name, [{ attachment_id: upload.attachment_id, sha256, width, height }]);
  } catch (error) {
    $("composer-error").textContent = error.message;
  }
}

// Your picture: straight to the object store, then named in your profile.
async function setPicture(file) {
  try {
    const upload = await call("POST", "/v1/me/avatar", { size: file.size, content_type: file.type });
    const put = await fetch(upload.url, { method: upload.method, headers: upload.headers, body: file });
    if (!put.ok) throw new Error(`the upload was refused (${put.status})`);
    learnProfile(await call("PUT", "/v1/me/profile", { avatar_id: upload.attachment_id }));
  } catch (error) {
    alert(error.message);
  }
}

// --- search -------------------------------------------------------------------------------

let searching = null; // {q, before, chatId}

async function search(q, more = false) {
  const list = $("search-results");
  if (!q || !current) {
    list.hidden = true;
    list.replaceChildren();
    searching = null;
    return;
  }
  if (!more) {
    searching = { q, before: null, chatId: current.id };
    list.replaceChildren();
  }
  const query = new URLSearchParams({ q, limit: "20" });
  if (searching.before) query.set("before", searching.before);
  try {
    const page = await call("GET", `/v1/chats/${encodeURIComponent(searching.chatId)}/search?${query}`);
    list.querySelector(".more")?.remove();
    for (const message of page.messages) {
      const item = document.createElement("li");
      item.className = "found";
      const time = document.createElement("time");
      time.textContent = new Date(message.created_at_ms).toLocaleString();
      const who = nameNode(message.sender_id, "b");
      item.append(time, who, document.createTextNode(`: ${message.body}`));
      list.append(item);
      searching.before = message.message_id;
    }
    if (!list.children.length) {
      const none = document.createElement("li");
      none.textContent = `Nothing found for “${q}”`;
      list.append(none);
    }
    if (page.has_more) {
      const next = document.createElement("li");
      next.className = "more";
      const button = document.createElement("button");
      button.className = "link";
      button.type = "button";
      button.textContent = "Older results";
      button.addEventListener("click", () => search(q, true));
      next.append(button);
      list.append(next);
    }
    list.hidden = false;
  } catch (error) {
    list.replaceChildren(Object.assign(document.createElement("li"), { textContent: error.message }));
    list.hidden = false;
  }
}

// --- the open chat's tools: members of a group, blocking a direct chat's peer -------------

function peerOf(chat) {
  return chat && chat.kind === "direct" ? chat.member_ids.find((id) => id !== session.user_id) : null;
}

function showTools() {
  const chat = current && chats.get(current.id);
  const group = Boolean(current && current.id.startsWith("g:"));
  $("search-form").hidden = !current;
  $("search-input").value = "";
  search("");
  $("members-button").hidden = !group;
  $("members-panel").hidden = true;
  const peer = peerOf(chat);
  $("block-button").hidden = !peer;
  $("block-button").textContent = peer && blocked.has(peer) ? "Unblock" : "Block";
}

async function toggleBlock() {
  const peer = peerOf(current && chats.get(current.id));
  if (!peer) return;
  const unblock = blocked.has(peer);
  try {
    await call(unblock ? "DELETE" : "PUT", `/v1/blocks/${peer}`, undefined);
    if (unblock) blocked.delete(peer);
    else blocked.add(peer);
    showTools();
  } catch (error) {
    $("composer-error").textContent = error.message;
  }
}

async function userIds(text) {
  const wanted = text.split(",").map((n) => n.trim().toLowerCase()).filter(Boolean);
  const ids = [];
  for (const username of wanted) {
    const user = await call("GET", `/v1/users?username=${encodeURIComponent(username)}`);
    learnProfile(user);
    ids.push(user.user_id);
  }
  return ids;
}

async function loadMembers() {
  if (!current) return;
  const chatId = current.id;
  const group = await call("GET", `/v1/groups/${encodeURIComponent(chatId)}`);
  const mine = group.members.find((m) => m.user_id === session.user_id);
  const manager = mine && (mine.role === "owner" || mine.role === "admin");
  if (document.activeElement !== $("rename-input")) $("rename-input").value = group.name;
  const list = $("member-list");
  list.replaceChildren();
  for (const member of group.members) {
    const item = document.createElement("li");
    item.dataset.userId = member.user_id;
    const who = nameNode(member.user_id);
    who.className = "who";
    item.append(avatarNode(member.user_id), who);
    if (manager && member.user_id !== session.user_id) {
      const role = document.createElement("select");
      for (const name of ["member", "admin", "owner"]) role.append(new Option(name, name, false, name === member.role));
      role.addEventListener("change", () =>
        groupCall("PUT", `/members/${member.user_id}/role`, { role: role.value }),
      );
      const remove = document.createElement("button");
      remove.className = "link remove";
      remove.type = "button";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => groupCall("DELETE", `/members/${member.user_id}`));
      item.append(role, remove);
    } else {
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = member.role;
      item.append(role);
    }
    list.append(item);
  }
}

async function groupCall(method, tail, body) {
  $("members-error").textContent = "";
  try {
    await call(method, `/v1/groups/${encodeURIComponent(current.id)}${tail}`, body);
    if (method === "DELETE" && tail === `/members/${session.user_id}`) {
      $("members-panel").hidden = true;
      await loadChats();
      return;
    }
    await loadMembers();
  } catch (error) {
    $("members-error").textContent = error.message;
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
    if (!profiled.has(peer)) learnName(peer, username.toLowerCase());
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
$("new-group-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("new-chat-error").textContent = "";
  try {
    const memberIds = await userIds($("new-group-members").value);
    const group = await call("POST", "/v1/groups", { name: $("new-group-name").value.trim(), member_ids: memberIds });
    $("new-group-name").value = "";
    $("new-group-members").value = "";
    await loadChats();
    if (!chats.has(group.chat_id)) {
      chats.set(group.chat_id, { chat_id: group.chat_id, kind: "group", name: group.name, member_ids: [], unread_count: 0, last_preview: "" });
    }
    await openChat(group.chat_id);
  } catch (error) {
    $("new-chat-error").textContent = error.message;
  }
});
$("profile-button").addEventListener("click", async () => {
  const shown = prompt("Your display name (empty: your username)", names()[session.user_id] || "");
  if (shown === null) return;
  try {
    const me = await call("PUT", "/v1/me/profile", { display_name: shown.trim() });
    learnProfile(me);
  } catch (error) {
    alert(error.message);
  }
});
$("avatar-button").addEventListener("click", () => $("avatar-input").click());
$("avatar-input").addEventListener("change", () => {
  const file = $("avatar-input").files[0];
  $("avatar-input").value = "";
  if (file) setPicture(file);
});
$("password-button").addEventListener("click", async () => {
  const current = prompt("Your current password");
  if (current === null) return;
  const next = prompt("Your new password (8 characters or more)");
  if (next === null) return;
  try {
    const done = await call("PUT", "/v1/me/password", { current_password: current, new_password: next });
    alert(`Password changed; ${done.sessions_ended} other session(s) logged out.`);
  } catch (error) {
    alert(error.message);
  }
});
$("logout-everywhere").addEventListener("click", async () => {
  try {
    await call("DELETE", "/v1/sessions");
  } finally {
    showLogin("Logged out on every device.");
  }
});
$("file-input").addEventListener("change", () => {
  const file = $("file-input").files[0];
  $("file-input").value = "";
  if (file) sendFile(file);
});
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  search($("search-input").value.trim());
});
$("search-input").addEventListener("search", () => search($("search-input").value.trim()));
$("block-button").addEventListener("click", toggleBlock);
$("members-button").addEventListener("click", () => {
  const panel = $("members-panel");
  panel.hidden = !panel.hidden;
  if (!panel.hidden) loadMembers().catch((error) => { $("members-error").textContent = error.message; });
});
$("rename-form").addEventListener("submit", (e) => {
  e.preventDefault();
  groupCall("PATCH", "", { name: $("rename-input").value.trim() });
});
$("add-member-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const ids = await userIds($("add-member-input").value);
    $("add-member-input").value = "";
    await groupCall("POST", "/members", { user_ids: ids });
  } catch (error) {
    $("members-error").textContent = error.message;
  }
});
$("leave-button").addEventListener("click", () => groupCall("DELETE", `/members/${session.user_id}`));
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
