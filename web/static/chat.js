// @ts-check
// The chat page: a room is the topic chat.{room}. Messages go out through
// the client's publish and come back through the room's subscription, to
// the sender too, so each is shown once, when the gateway delivers it. The
// room's recent messages come from the history API on joining (and again
// when the client says it could not recover some); after a reconnect the
// client recovers what was missed by itself.

import { ErrorCode, GatewayClient, GatewayError, TOPIC_PATTERN } from "./wsgateway.js";
import { byId, byTestId, el } from "./dom.js";

/** How often the room's member count is asked for again. */
const COUNT_REFRESH_MS = 2000;
/** Messages shown on joining, and kept on the page at most. */
const RECENT = 50;

const connection = byId("connection", HTMLElement);
const statusText = byTestId("status", HTMLElement);
const connectionError = byTestId("connection-error", HTMLElement);
const nameInput = byTestId("name-input", HTMLInputElement);
const roomInput = byTestId("room-input", HTMLInputElement);
const roomTopic = byId("room-topic", HTMLElement);
const joinError = byTestId("join-error", HTMLElement);
const roomTitle = byTestId("room-title", HTMLElement);
const memberCount = byTestId("member-count", HTMLElement);
const chatLog = byTestId("chat-log", HTMLOListElement);
const noMessages = byId("no-messages", HTMLElement);
const textInput = byTestId("message-input", HTMLInputElement);
const sendButton = byTestId("send-button", HTMLButtonElement);
const sendError = byTestId("send-error", HTMLElement);

/**
 * A message of the room as shown: from the subscription, or from history.
 * @typedef {{ id: string, offset: number, data: unknown, publishTime: string }} ChatMessage
 */

/**
 * The room joined: its messages by offset within epoch (null until the
 * first one), so that history and the live stream, which overlap, show
 * each message once and in order.
 * @typedef {{ topic: string, epoch: string | null, messages: Map<number, ChatMessage>, leave: () => void, loaded: boolean }} Room
 */
/** @type {Room | null} */
let room = null;

const params = new URLSearchParams(location.search);
nameInput.value = params.get("name") ?? sessionStorage.getItem("wsgateway.chatName") ?? `guest-${Math.floor(Math.random() * 9000) + 1000}`;
roomInput.value = params.get("room") ?? "lobby";

main().catch((err) => showConnectionError(`The page could not start: ${err instanceof Error ? err.message : err}`));

async function main() {
  const res = await fetch("/config.json", { cache: "no-store" });
  if (!res.ok) {
    throw new Error(`/config.json answered ${res.status}`);
  }
  /** @type {{ webSocketUrl: string }} */
  const config = await res.json();
  const client = new GatewayClient(config.webSocketUrl, { token: params.get("token") ?? undefined });

  client.on("status", showStatus);
  client.on("subscriptions", (subs) => {
    // History once the subscription is stored: what it misses, the stream brings.
    if (room && !room.loaded && subs.some((s) => s.topic === room?.topic && s.active)) {
      room.loaded = true;
      loadHistory(room);
    }
    refreshCount();
  });
  client.on("resync", ({ topic }) => {
    if (room?.topic === topic) {
      loadHistory(room); // the history API is the room's source of truth
    }
  });
  client.on("disconnect", ({ reason, reconnect }) => {
    if (!reconnect) {
      statusText.textContent = "closed by the server";
      showConnectionError(`Disconnected by the server${reason ? `: ${reason}` : ""}. Reload the page to connect again.`);
    }
  });
  client.on("error", (err) => {
    if (err.code === ErrorCode.CONNECT_FAILED) {
      showConnectionError("Could not connect to the gateway. Retrying automatically.");
    } else {
      // Error frames answer the room's subscribe; a publish's go to its promise.
      showError(joinError, `The server said: ${err.message} (${err.code})`);
    }
  });
  setInterval(refreshCount, COUNT_REFRESH_MS);

  roomInput.addEventListener("input", () => (roomTopic.textContent = `chat.${roomInput.value.trim()}`));
  byId("join-form", HTMLFormElement).addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = nameInput.value.trim();
    const topic = `chat.${roomInput.value.trim()}`;
    if (!name) {
      showError(joinError, "Enter a name.");
      return;
    }
    if (!TOPIC_PATTERN.test(topic)) {
      showError(joinError, "A room name is letters, digits and . _ : - only.");
      return;
    }
    joinError.hidden = true;
    sessionStorage.setItem("wsgateway.chatName", name);
    join(client, topic);
  });
  byId("send-form", HTMLFormElement).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = textInput.value.trim();
    if (!room || !text) {
      return;
    }
    sendButton.disabled = true;
    try {
      await client.publish(room.topic, { name: nameInput.value.trim(), text });
      textInput.value = ""; // shown when it comes back through the subscription
      sendError.hidden = true;
    } catch (err) {
      const why = err instanceof GatewayError ? `${err.message} (${err.code})` : String(err);
      showError(sendError, `Not sent: ${why}`);
    } finally {
      sendButton.disabled = false;
      textInput.focus();
    }
  });

  client.connect();
  if (params.has("room")) {
    byId("join-form", HTMLFormElement).requestSubmit();
  }
}

/**
 * Leaves the current room, if any, and joins topic.
 * @param {GatewayClient} client
 * @param {string} topic
 */
function join(client, topic) {
  if (room?.topic === topic) {
    return;
  }
  room?.leave();
  /** @type {Room} */
  const r = { topic, epoch: null, messages: new Map(), leave: () => {}, loaded: false };
  room = r;
  r.leave = client.subscribe(topic, (m) => {
    if (m.offset !== undefined && m.epoch !== undefined) {
      add(r, m.epoch, [{ id: m.id, offset: m.offset, data: m.data, publishTime: m.publishTime }]);
    }
  });
  roomTitle.textContent = topic;
  textInput.disabled = sendButton.disabled = false;
  render();
  refreshCount();
}

/**
 * Adds messages of epoch to the room; a new epoch (the topic's position was
 * reset) replaces what was shown, since its offsets start over.
 * @param {Room} r
 * @param {string} epoch
 * @param {ChatMessage[]} messages
 */
function add(r, epoch, messages) {
  if (r.epoch !== epoch) {
    r.epoch = epoch;
    r.messages.clear();
  }
  for (const m of messages) {
    r.messages.set(m.offset, m);
  }
  if (r === room) {
    render();
  }
}

/**
 * Shows the room's last messages from the history API: it answers from an
 * offset, so it is asked twice, for the latest offset and then what leads
 * up to it. The API key, if the demo page was given one in this tab, goes
 * along; a stack without API_KEYS needs none.
 * @param {Room} r
 */
async function loadHistory(r) {
  try {
    /**
     * Offsets come as strings: protobuf's JSON for 64-bit numbers.
     * @param {string} query
     * @returns {Promise<{ messages?: { messageId: string, offset: string, data: unknown, publishTime: string }[], epoch: string, latestOffset?: string }>}
     */
    const get = async (query) => {
      const res = await fetch(`/v1/topics/${r.topic}/history?${query}`, { headers: restHeaders(), cache: "no-store" });
      if (!res.ok) {
        throw new Error(`HTTP ${res.status}`);
      }
      return res.json();
    };
    const head = await get("limit=1");
    const latest = Number(head.latestOffset ?? 0);
    const recent = latest === 0 ? head : await get(`sinceOffset=${Math.max(0, latest - RECENT)}&limit=${RECENT}`);
    add(
      r,
      recent.epoch,
      (recent.messages ?? []).map((m) => ({ id: m.messageId, offset: Number(m.offset), data: m.data, publishTime: m.publishTime })),
    );
  } catch (err) {
    showError(sendError, `Could not load the room's recent messages: ${err instanceof Error ? err.message : err}`);
  }
}

function render() {
  const shown = room ? [...room.messages.values()].sort((a, b) => a.offset - b.offset).slice(-RECENT) : [];
  chatLog.replaceChildren(
    ...shown.map((m) => {
      const d = /** @type {{ name?: unknown, text?: unknown }} */ (m.data ?? {});
      const time = new Date(m.publishTime);
      const li = el("li", { className: "message" }, [
        el("div", { className: "meta" }, [
          el("span", { className: "topic", textContent: typeof d.name === "string" ? d.name : "someone" }),
          el("time", { dateTime: m.publishTime, textContent: isNaN(time.getTime()) ? "" : time.toLocaleTimeString() }),
        ]),
        el("p", { className: "text", textContent: typeof d.text === "string" ? d.text : JSON.stringify(m.data) }),
      ]);
      li.dataset.testid = "chat-message";
      li.dataset.offset = String(m.offset);
      return li;
    }),
  );
  noMessages.hidden = shown.length > 0;
  chatLog.lastElementChild?.scrollIntoView({ block: "nearest" });
}

// Answers can come back out of order after a room change: only the latest is shown.
let countRequest = 0;

async function refreshCount() {
  const id = ++countRequest;
  const topic = room?.topic;
  if (!topic) {
    return;
  }
  try {
    const res = await fetch(`/v1/topics/${topic}/subscribers:count`, { headers: restHeaders(), cache: "no-store" });
    /** @type {{ connections?: number, users?: number }} */
    const body = await res.json().catch(() => ({}));
    if (id !== countRequest) {
      return;
    }
    if (!res.ok) {
      memberCount.textContent = res.status === 401 ? "members: needs the API key" : `members unavailable (HTTP ${res.status})`;
    } else {
      // Zero counts may be left out of the JSON. Users are counted by connect
      // token; without tokens every window is someone.
      const n = body.users || body.connections || 0;
      memberCount.replaceChildren(el("strong", { textContent: String(n) }), " here");
    }
    memberCount.hidden = false;
  } catch {
    if (id === countRequest) {
      memberCount.textContent = "members unavailable";
      memberCount.hidden = false;
    }
  }
}

/** The API key the demo page keeps for this tab, if it has one. */
function restHeaders() {
  const key = sessionStorage.getItem("wsgateway.apiKey");
  /** @type {Record<string, string>} */
  const headers = {};
  if (key) {
    headers.Authorization = `Bearer ${key}`;
  }
  return headers;
}

/** @param {import("./wsgateway.js").Status} status */
function showStatus(status) {
  connection.dataset.state = status.state;
  if (status.state === "open") {
    statusText.textContent = "connected";
    connectionError.hidden = true;
  } else if (status.state === "waiting") {
    statusText.textContent = `offline — retrying in ${Math.ceil((status.retryInMs ?? 0) / 1000)} s`;
  } else {
    statusText.textContent = status.state === "connecting" ? "connecting…" : "closed";
  }
}

/** @param {HTMLElement} target @param {string} text */
function showError(target, text) {
  target.textContent = text;
  target.hidden = false;
}

/** @param {string} text */
function showConnectionError(text) {
  showError(connectionError, text);
}
