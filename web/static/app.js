// @ts-check
// The demo page: the browser client on one side, the REST facade on the
// other. It learns the WebSocket URL from /config.json and passes a
// ?token= of its own URL on to the WebSocket.

/** How often the topic's subscriber count is asked for again. */
const COUNT_REFRESH_MS = 3000;

import { GatewayClient, ErrorCode, TOPIC_PATTERN } from "./wsgateway.js";
import { byId, byTestId, el } from "./dom.js";

/** Oldest messages are dropped past this, so a busy topic cannot grow the page forever. */
const MAX_LOG = 200;

const connection = byId("connection", HTMLElement);
const statusText = byTestId("status", HTMLElement);
const connectionError = byTestId("connection-error", HTMLElement);
const topicInput = byTestId("topic-input", HTMLInputElement);
const topicError = byTestId("topic-error", HTMLElement);
const subscriptionList = byTestId("subscriptions", HTMLUListElement);
const noSubscriptions = byId("no-subscriptions", HTMLElement);
const dataInput = byTestId("publish-data-input", HTMLTextAreaElement);
const publishButton = byTestId("publish-button", HTMLButtonElement);
const publishResult = byTestId("publish-result", HTMLOutputElement);
const log = byTestId("message-log", HTMLOListElement);
const noMessages = byId("no-messages", HTMLElement);
const messageCount = byId("message-count", HTMLElement);
const recoveryNote = byTestId("recovery-note", HTMLElement);
const publishEndpoint = byId("publish-endpoint", HTMLElement);
const curlExample = byId("curl-example", HTMLElement);
const apiKeyInput = byTestId("api-key-input", HTMLInputElement);
const subscriberCount = byTestId("subscriber-count", HTMLElement);

// The API key lives in sessionStorage: it survives a reload of this tab but
// not the tab, and is never written to disk for good as localStorage would.
const API_KEY_STORAGE = "wsgateway.apiKey";
apiKeyInput.value = sessionStorage.getItem(API_KEY_STORAGE) ?? "";
apiKeyInput.addEventListener("input", () => {
  const key = apiKeyInput.value.trim();
  if (key) {
    sessionStorage.setItem(API_KEY_STORAGE, key);
  } else {
    sessionStorage.removeItem(API_KEY_STORAGE);
  }
});

main().catch((err) => showConnectionError(`The page could not start: ${err instanceof Error ? err.message : err}`));

async function main() {
  const res = await fetch("/config.json", { cache: "no-store" });
  if (!res.ok) {
    throw new Error(`/config.json answered ${res.status}`);
  }
  /** @type {{ webSocketUrl: string }} */
  const config = await res.json();
  const token = new URLSearchParams(location.search).get("token") ?? undefined;
  const client = new GatewayClient(config.webSocketUrl, { token });
  byId("ws-url", HTMLElement).textContent = config.webSocketUrl;

  client.on("status", showStatus);
  client.on("subscriptions", showSubscriptions);
  client.on("message", addMessage);
  client.on("recovered", noteRecovered);
  client.on("resync", noteResync);
  client.on("disconnect", ({ reason, reconnect }) => {
    // With reconnect, the status's "waiting" notice says it all already.
    if (!reconnect) {
      // Not "disconnected": no status text but the open state's may contain "connected".
      statusText.textContent = "closed by the server";
      showConnectionError(`Disconnected by the server${reason ? `: ${reason}` : ""}. The page stays offline: reload it to connect again.`);
    }
  });
  // A confirmed subscribe or unsubscribe changes the count at once; the
  // timer catches the other pages' and backends' changes.
  client.on("subscriptions", refreshCount);
  setInterval(refreshCount, COUNT_REFRESH_MS);
  client.on("error", (err) => {
    if (err.code === ErrorCode.CONNECT_FAILED) {
      showConnectionError(`${capitalize(err.message)}. Retrying automatically.`);
    } else if (err.code === ErrorCode.BAD_URL) {
      showConnectionError(`${capitalize(err.message)}. Check webSocketUrl in /config.json.`);
    } else {
      // Error frames answer what this page sent: its subscribe and unsubscribe.
      showError(topicError, `The server said: ${err.message} (${err.code})`);
    }
  });

  byId("subscribe-form", HTMLFormElement).addEventListener("submit", (ev) => {
    ev.preventDefault();
    const topic = readTopic();
    if (topic) {
      client.subscribe(topic);
    }
  });
  subscriptionList.addEventListener("click", (ev) => {
    const button = ev.target instanceof Element ? ev.target.closest("button[data-topic]") : null;
    if (button instanceof HTMLButtonElement && button.dataset.topic) {
      client.unsubscribe(button.dataset.topic);
    }
  });
  byId("publish-form", HTMLFormElement).addEventListener("submit", (ev) => {
    ev.preventDefault();
    publish();
  });
  dataInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      publish();
    }
  });
  topicInput.addEventListener("input", showTopic);
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let typing;
  for (const input of [topicInput, apiKeyInput]) {
    input.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(refreshCount, 300); // not a request per keystroke
    });
  }
  showTopic();
  refreshCount();
  byId("clear-log", HTMLButtonElement).addEventListener("click", () => {
    log.replaceChildren();
    updateLogCount();
    clearRecovery();
  });

  client.connect();
}

/** Shows where a publish goes, in the form and as a curl command. */
function showTopic() {
  const topic = topicInput.value.trim() || "{topic}";
  publishEndpoint.textContent = `POST /v1/topics/${topic}:publish`;
  curlExample.textContent = `curl -X POST ${location.origin}/v1/topics/${topic}:publish -d '{"data":{"hello":"world"}}'`;
}

/** @type {ReturnType<typeof setInterval> | undefined} */
let countdown;

/** @param {import("./wsgateway.js").Status} status */
function showStatus(status) {
  clearInterval(countdown);
  connection.dataset.state = status.state;
  switch (status.state) {
    case "open":
      clearRecovery(); // the note is about the last connection's recovery; this one's follows
      // Tests and people look for "connected"; no other state's text may contain it.
      statusText.textContent = "connected";
      connectionError.hidden = true;
      break;
    case "connecting":
      statusText.textContent = status.attempt === 0 ? "connecting…" : "reconnecting…";
      break;
    case "waiting": {
      const retryAt = Date.now() + (status.retryInMs ?? 0);
      const tick = () => {
        const s = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
        statusText.textContent = `offline — retrying in ${s} s`;
      };
      tick();
      countdown = setInterval(tick, 250);
      if (status.reason !== "could not connect") {
        showConnectionError(`${capitalize(status.reason ?? "connection lost")}. Reconnecting and resubscribing automatically.`);
      }
      break;
    }
    case "closed":
      statusText.textContent = "closed";
      break;
  }
}

// Answers can come back out of order (a slow one, then the topic changed):
// only the latest request's is shown.
let countRequest = 0;

/** Shows how many connections and users are on the topic in the form. */
async function refreshCount() {
  const id = ++countRequest;
  const topic = topicInput.value.trim();
  if (!TOPIC_PATTERN.test(topic)) {
    subscriberCount.hidden = true;
    return;
  }
  /** @type {(Node | string)[]} */
  let shown;
  try {
    const res = await fetch(`/v1/topics/${topic}/subscribers:count`, { headers: restHeaders(), cache: "no-store" });
    /** @type {{ connections?: number, users?: number, message?: string }} */
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      // Zero counts may be left out of the JSON.
      /** @param {number | undefined} n @param {string} noun */
      const count = (n, noun) => el("strong", { textContent: `${n ?? 0} ${noun}${n === 1 ? "" : "s"}` });
      shown = [`On ${topic}: `, count(body.connections, "connection"), " · ", count(body.users, "user")];
    } else if (res.status === 401) {
      shown = ["Subscriber count: enter an API key to see it (HTTP 401)."];
    } else {
      shown = [`Subscriber count unavailable: ${body.message || res.statusText} (HTTP ${res.status}).`];
    }
  } catch (err) {
    shown = [`Subscriber count unavailable: the REST API is unreachable (${err instanceof Error ? err.message : err}).`];
  }
  if (id === countRequest) {
    subscriberCount.replaceChildren(...shown);
    subscriberCount.hidden = false;
  }
}

/** @param {import("./wsgateway.js").Subscription[]} subscriptions */
function showSubscriptions(subscriptions) {
  subscriptionList.replaceChildren(
    ...subscriptions.map(({ topic, active }) => {
      const unsubscribe = el("button", { className: "link", type: "button", textContent: "Unsubscribe" });
      unsubscribe.dataset.topic = topic;
      unsubscribe.setAttribute("aria-label", `Unsubscribe from ${topic}`);
      const li = el("li", {}, [
        el("span", { className: "topic", textContent: topic }),
        el("span", { className: `badge ${active ? "ok" : "pending"}`, textContent: active ? "active" : "pending" }),
        unsubscribe,
      ]);
      li.dataset.topic = topic;
      return li;
    }),
  );
  noSubscriptions.hidden = subscriptions.length > 0;
}

/** @param {import("./wsgateway.js").MessageFrame} m */
function addMessage(m) {
  const time = new Date(m.publishTime);
  const meta = el("div", { className: "meta" }, [
    // A message sent to the page's user rather than published to a topic.
    m.user !== undefined
      ? el("span", { className: "topic user", title: "sent to this user", textContent: `to user ${m.user}` })
      : el("span", { className: "topic", textContent: m.topic }),
    // The topic's position, gapless within an epoch: a reader sees at a glance that none is missing.
    ...(m.offset === undefined ? [] : [el("span", { className: "offset", title: `offset ${m.offset} of epoch ${m.epoch}`, textContent: `#${m.offset}` })]),
    el("time", {
      dateTime: m.publishTime,
      title: m.publishTime,
      textContent: isNaN(time.getTime()) ? m.publishTime : formatTime(time),
    }),
    el("span", { className: "id", title: "message id", textContent: m.id }),
  ]);
  const item = el("li", { className: "message" }, [meta, el("pre", { textContent: prettyJSON(m.data) })]);
  const attrs = Object.entries(m.attributes ?? {});
  if (attrs.length > 0) {
    item.append(el("p", { className: "attributes", textContent: attrs.map(([k, v]) => `${k}=${v}`).join("  ") }));
  }
  log.prepend(item);
  while (log.childElementCount > MAX_LOG) {
    log.lastElementChild?.remove();
  }
  updateLogCount();
}

// What the client recovered, or could not, since the connection opened:
// the page's stand-in for an app that would reload from its own data.
const recovered = { reconnect: 0, gap: 0 };
/** @type {Set<string>} */
const unrecovered = new Set();

/** @param {import("./wsgateway.js").Recovered} r */
function noteRecovered(r) {
  recovered[r.cause] += r.count;
  showRecovery();
}

/** @param {import("./wsgateway.js").Resync} r */
function noteResync(r) {
  unrecovered.add(r.topic);
  showRecovery();
}

function clearRecovery() {
  recovered.reconnect = recovered.gap = 0;
  unrecovered.clear();
  showRecovery();
}

function showRecovery() {
  /** @param {number} n */
  const messages = (n) => (n === 1 ? "1 message" : `${n} messages`);
  const parts = [];
  if (recovered.reconnect > 0) {
    parts.push(`${messages(recovered.reconnect)} recovered after reconnect`);
  }
  if (recovered.gap > 0) {
    parts.push(`${messages(recovered.gap)} recovered from a gap`);
  }
  for (const topic of unrecovered) {
    parts.push(`could not recover ${topic}: reload`);
  }
  recoveryNote.textContent = capitalize(parts.join(" · "));
  recoveryNote.classList.toggle("warn", unrecovered.size > 0);
  recoveryNote.hidden = parts.length === 0;
}

function updateLogCount() {
  messageCount.textContent = String(log.childElementCount);
  noMessages.hidden = log.childElementCount > 0;
}

async function publish() {
  const topic = readTopic();
  if (!topic) {
    return;
  }
  const text = dataInput.value.trim();
  /** @type {unknown} */
  let data;
  try {
    if (text === "") {
      throw new SyntaxError('it is empty; try {"hello": "world"}');
    }
    data = JSON.parse(text);
  } catch (err) {
    showError(publishResult, `Not published: the data is not valid JSON — ${err instanceof Error ? err.message : err}.`);
    return;
  }
  publishButton.disabled = true;
  try {
    const res = await fetch(`/v1/topics/${topic}:publish`, {
      method: "POST",
      headers: restHeaders(),
      body: JSON.stringify({ data }),
    });
    /** @type {{ messageId?: string, delivered?: number, gone?: number, failed?: number, message?: string }} */
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) {
      showError(
        publishResult,
        apiKeyInput.value.trim()
          ? "Not published: the API key was refused (HTTP 401). Use one of the stack's API_KEYS."
          : "Not published: publisher auth is on (HTTP 401). Enter one of the stack's API_KEYS in the API key field.",
      );
      apiKeyInput.focus();
      return;
    }
    if (!res.ok) {
      showError(publishResult, `Not published: ${body.message || res.statusText} (HTTP ${res.status}).`);
      return;
    }
    publishResult.classList.remove("error");
    publishResult.replaceChildren(
      el("strong", { textContent: `Published to ${topic}: ` }),
      `delivered ${body.delivered ?? 0} · gone ${body.gone ?? 0} · failed ${body.failed ?? 0}`,
      el("span", { className: "id", textContent: body.messageId ?? "" }),
    );
  } catch (err) {
    showError(publishResult, `Not published: the REST API is unreachable (${err instanceof Error ? err.message : err}).`);
  } finally {
    publishButton.disabled = false;
  }
}

/**
 * The headers of a REST call: JSON, and the API key as a Bearer token when
 * one is entered.
 * @returns {Record<string, string>}
 */
function restHeaders() {
  /** @type {Record<string, string>} */
  const headers = { "Content-Type": "application/json" };
  const key = apiKeyInput.value.trim();
  if (key) {
    headers.Authorization = `Bearer ${key}`;
  }
  return headers;
}

/** The topic in the form, or "" after telling the user what is wrong with it. */
function readTopic() {
  const topic = topicInput.value.trim();
  if (!TOPIC_PATTERN.test(topic)) {
    showError(
      topicError,
      topic === "" ? "Enter a topic name." : `"${topic}" is not a valid topic: use letters, digits and . _ : - (starting with a letter or digit).`,
    );
    topicInput.focus();
    return "";
  }
  topicError.hidden = true;
  return topic;
}

/** @param {HTMLElement} target @param {string} text */
function showError(target, text) {
  target.classList.add("error");
  target.textContent = text;
  target.hidden = false;
}

/** @param {string} text */
function showConnectionError(text) {
  connectionError.textContent = text;
  connectionError.hidden = false;
}

/**
 * JSON indented like JSON.stringify(v, null, 2), except that arrays and
 * objects short enough stay on one line: [1, 2, 3] reads better than five.
 * @param {unknown} value
 * @param {string} [indent]
 * @returns {string}
 */
function prettyJSON(value, indent = "") {
  const line = inlineJSON(value);
  if (value === null || typeof value !== "object" || indent.length + line.length <= 72) {
    return line;
  }
  const inner = indent + "  ";
  const [open, close, parts] = Array.isArray(value)
    ? ["[", "]", value.map((v) => inner + prettyJSON(v, inner))]
    : ["{", "}", Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${prettyJSON(v, inner)}`)];
  return parts.length === 0 ? open + close : `${open}\n${parts.join(",\n")}\n${indent}${close}`;
}

/** @param {unknown} value @returns {string} */
function inlineJSON(value) {
  if (Array.isArray(value)) {
    return `[${value.map(inlineJSON).join(", ")}]`;
  }
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${inlineJSON(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** @param {Date} t */
function formatTime(t) {
  return t.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false });
}

/** @param {string} s */
function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
