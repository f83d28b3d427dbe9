// @ts-check
/**
 * The wsgateway browser client: one WebSocket to the gateway, carrying topic
 * subscriptions that survive reconnects.
 *
 *     const client = new GatewayClient("wss://example.com/", { token });
 *     client.on("message", (m) => console.log(m.topic, m.data));
 *     client.on("status", (s) => console.log(s.state));
 *     client.on("error", (e) => console.warn(e.code, e.message));
 *     client.connect();
 *     client.subscribe(["orders.eu"]);
 *
 * The wire format is docs/protocol.md's "WebSocket frames": JSON text frames,
 * typed below. Subscriptions are remembered and sent again on every new
 * connection, because API Gateway forgets them with the connection. The
 * client never throws on what the server sends: a frame it does not
 * understand is reported as an "error" event and dropped.
 *
 * Plain ES module with JSDoc types, checked by tsc (web/tsconfig.json): no
 * build step, no dependencies.
 */

/** Topic names the gateway accepts (internal/wsproto, docs/protocol.md). */
export const TOPIC_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** The gateway refuses subscribe and unsubscribe frames with more topics. */
export const MAX_TOPICS_PER_FRAME = 50;

/**
 * Any JSON value: what a message's data can be. (Three typedefs: JSDoc
 * cannot declare a recursive alias in one.)
 * @typedef {null | boolean | number | string | JSONArray | JSONObject} JSONValue
 */
/** @typedef {Array<JSONValue>} JSONArray */
/** @typedef {{ [key: string]: JSONValue }} JSONObject */

/**
 * Frames the client sends.
 * @typedef {{ action: "subscribe" | "unsubscribe", topics: string[] }} TopicsRequest
 * @typedef {{ action: "ping" }} PingRequest
 * @typedef {TopicsRequest | PingRequest} ClientFrame
 */

/**
 * Frames the server sends.
 * @typedef {{ type: "subscribed" | "unsubscribed", topics: string[] }} TopicsFrame
 * @typedef {{ type: "pong" }} PongFrame
 * @typedef {{
 *   type: "message",
 *   topic: string,
 *   id: string,
 *   data: JSONValue,
 *   attributes?: Record<string, string>,
 *   publishTime: string,
 * }} MessageFrame
 * @typedef {{ type: "error", code: string, message: string }} ErrorFrame
 * @typedef {TopicsFrame | PongFrame | MessageFrame | ErrorFrame} ServerFrame
 */

/**
 * Where the connection stands:
 * - "connecting": a socket is opening (attempt 0 is the first one);
 * - "open": connected, subscriptions are being (re)sent;
 * - "waiting": the last socket closed or failed; the next attempt is in
 *   retryInMs, and reason says what happened;
 * - "closed": close() was called; nothing happens until connect().
 * @typedef {"connecting" | "open" | "waiting" | "closed"} State
 * @typedef {{ state: State, attempt: number, retryInMs?: number, reason?: string }} Status
 */

/**
 * A subscription the client holds; active once the server confirmed it on
 * the current connection.
 * @typedef {{ topic: string, active: boolean }} Subscription
 */

/**
 * @typedef {{
 *   message: MessageFrame,
 *   status: Status,
 *   error: GatewayError,
 *   subscriptions: Subscription[],
 * }} EventMap
 */

/**
 * The subset of the browser's WebSocket the client uses; tests pass a fake.
 * @typedef {{
 *   readonly readyState: number,
 *   onopen: ((ev: any) => void) | null,
 *   onmessage: ((ev: { data: unknown }) => void) | null,
 *   onclose: ((ev: { code: number, reason: string }) => void) | null,
 *   onerror: ((ev: any) => void) | null,
 *   send(data: string): void,
 *   close(code?: number, reason?: string): void,
 * }} Socket
 * @typedef {new (url: string) => Socket} SocketConstructor
 */

/**
 * @typedef {object} Options
 * @property {string} [token] Connect token, sent as the `token` query
 *   parameter (browsers cannot set headers on a WebSocket).
 * @property {number} [pingIntervalMs] How often to ping while open; well
 *   inside API Gateway's 10-minute idle timeout. Default 5 minutes.
 * @property {number} [pongTimeoutMs] A connection that answers a ping with
 *   nothing for this long is treated as dead and replaced. Default 30 s.
 * @property {number} [initialBackoffMs] First reconnect delay. Default 500 ms.
 * @property {number} [maxBackoffMs] Cap on reconnect delays. Default 30 s.
 * @property {SocketConstructor} [WebSocket] Defaults to globalThis.WebSocket.
 * @property {() => number} [random] Jitter source in [0, 1); Math.random.
 */

/** Codes of the errors the client raises itself; the server's are in its error frames. */
export const ErrorCode = Object.freeze({
  /** The socket closed before it opened: refused, unreachable, or $connect said no. */
  CONNECT_FAILED: "connect_failed",
  /** The server sent something that is not a frame of the protocol. */
  UNEXPECTED_FRAME: "unexpected_frame",
  /** A topic name does not match TOPIC_PATTERN. */
  INVALID_TOPIC: "invalid_topic",
  /** The WebSocket URL cannot be used. */
  BAD_URL: "bad_url",
});

/** An error frame from the server, or a problem the client ran into. */
export class GatewayError extends Error {
  /**
   * @param {string} code snake_case, from the server's error frame or ErrorCode
   * @param {string} message one line for a human
   * @param {unknown} [frame] the raw frame, when a frame caused it
   */
  constructor(code, message, frame) {
    super(message);
    this.name = "GatewayError";
    /** @readonly */
    this.code = code;
    /** @readonly */
    this.frame = frame;
  }
}

/**
 * Decodes one server frame. Never throws: anything outside the protocol
 * comes back as a GatewayError with code "unexpected_frame". Fields the
 * protocol does not know are ignored, so servers can add them.
 * @param {unknown} raw the MessageEvent's data
 * @returns {ServerFrame | GatewayError}
 */
export function parseFrame(raw) {
  /** @param {string} why */
  const unexpected = (why) => new GatewayError(ErrorCode.UNEXPECTED_FRAME, `unexpected frame from the server: ${why}`, raw);
  if (typeof raw !== "string") {
    return unexpected("not a text frame");
  }
  /** @type {unknown} */
  let v;
  try {
    v = JSON.parse(raw);
  } catch {
    return unexpected("not JSON");
  }
  if (!isRecord(v)) {
    return unexpected("not a JSON object");
  }
  switch (v.type) {
    case "subscribed":
    case "unsubscribed":
      if (isStringArray(v.topics)) {
        return { type: v.type, topics: v.topics };
      }
      return unexpected(`${v.type} without a list of topics`);
    case "pong":
      return { type: "pong" };
    case "message": {
      const { topic, id, data, attributes, publishTime } = v;
      if (typeof topic !== "string" || typeof id !== "string" || typeof publishTime !== "string" || data === undefined) {
        return unexpected("message without topic, id, data and publishTime");
      }
      if (attributes !== undefined && !isStringRecord(attributes)) {
        return unexpected("message attributes are not strings");
      }
      /** @type {MessageFrame} */
      const m = { type: "message", topic, id, data: /** @type {JSONValue} */ (data), publishTime };
      if (attributes !== undefined) {
        m.attributes = attributes;
      }
      return m;
    }
    case "error":
      if (typeof v.code === "string" && typeof v.message === "string") {
        return { type: "error", code: v.code, message: v.message };
      }
      return unexpected("error without code and message");
    default:
      return unexpected(`unknown type ${JSON.stringify(v.type) ?? "(none)"}`);
  }
}

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential,
 * capped at maxMs, with "equal jitter" — a random half — so that clients
 * dropped together do not come back together, yet never retry at once.
 * @param {number} attempt
 * @param {{ initialMs: number, maxMs: number }} limits
 * @param {() => number} random in [0, 1)
 */
export function backoffDelay(attempt, { initialMs, maxMs }, random) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return ceiling / 2 + (random() * ceiling) / 2;
}

/**
 * Throws a GatewayError naming the first invalid topic, so that a bad name
 * never enters the set the client resubscribes on every reconnect.
 * @param {string | string[]} topics
 * @returns {string[]}
 */
function checkTopics(topics) {
  const list = typeof topics === "string" ? [topics] : [...topics];
  for (const t of list) {
    if (typeof t !== "string" || !TOPIC_PATTERN.test(t)) {
      throw new GatewayError(
        ErrorCode.INVALID_TOPIC,
        `invalid topic ${JSON.stringify(t)}: use 1 to 128 letters, digits and . _ : - (not starting with a symbol)`,
      );
    }
  }
  return list;
}

const OPEN = 1; // WebSocket.OPEN, without needing the global

export class GatewayClient {
  /** @type {string} */ #url;
  /** @type {string} the URL without its query, for messages: the token stays out of logs */
  #shownURL;
  #opts;
  /** @type {Socket | null} */ #ws = null;
  /** @type {Status} */ #status = { state: "closed", attempt: 0 };
  #attempt = 0;
  /** @type {Map<string, boolean>} topic → confirmed on this connection */
  #topics = new Map();
  /** @type {{ [K in keyof EventMap]: Set<(value: EventMap[K]) => void> }} */
  #listeners = { message: new Set(), status: new Set(), error: new Set(), subscriptions: new Set() };
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #retryTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */ #pingTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #pongTimer;

  /**
   * @param {string} url the WebSocket API, e.g. "wss://abc.execute-api.eu-west-1.amazonaws.com/prod"
   * @param {Options} [options]
   */
  constructor(url, options = {}) {
    this.#opts = {
      pingIntervalMs: options.pingIntervalMs ?? 5 * 60_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 30_000,
      initialMs: options.initialBackoffMs ?? 500,
      maxMs: options.maxBackoffMs ?? 30_000,
      WebSocket: options.WebSocket ?? /** @type {SocketConstructor} */ (globalThis.WebSocket),
      random: options.random ?? Math.random,
    };
    this.#url = url;
    this.#shownURL = url;
    try {
      const u = new URL(url);
      if (options.token) {
        u.searchParams.set("token", options.token);
      }
      this.#url = u.toString();
      u.search = "";
      this.#shownURL = u.toString();
    } catch {
      // Left as given: connect() reports it as bad_url.
    }
  }

  /** The current status (also delivered by the "status" event). */
  get status() {
    return this.#status;
  }

  /** Every topic the client holds, in the order subscribed. */
  get subscriptions() {
    return [...this.#topics].map(([topic, active]) => ({ topic, active }));
  }

  /**
   * Calls listener on every event of that type; returns a function that
   * stops it. A listener that throws does not disturb the client or the
   * other listeners: the exception is rethrown on its own task.
   * @template {keyof EventMap} K
   * @param {K} type
   * @param {(value: EventMap[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    const set = /** @type {Set<(value: EventMap[K]) => void>} */ (this.#listeners[type]);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Opens the connection, and keeps it open until close(). Idempotent. */
  connect() {
    if (this.#status.state === "closed") {
      this.#attempt = 0;
      this.#open();
    }
  }

  /**
   * Subscribes to topics, now if connected and again after every reconnect.
   * Throws a GatewayError (code "invalid_topic") for an invalid name and
   * then subscribes to none of them.
   * @param {string | string[]} topics
   */
  subscribe(topics) {
    const list = checkTopics(topics);
    for (const t of list) {
      if (!this.#topics.has(t)) {
        this.#topics.set(t, false);
      }
    }
    this.#emit("subscriptions", this.subscriptions);
    this.#sendTopics("subscribe", list);
  }

  /**
   * Stops receiving topics and forgets them.
   * @param {string | string[]} topics
   */
  unsubscribe(topics) {
    const list = checkTopics(topics);
    for (const t of list) {
      this.#topics.delete(t);
    }
    this.#emit("subscriptions", this.subscriptions);
    this.#sendTopics("unsubscribe", list);
  }

  /** Closes the connection for good (until connect()); subscriptions are kept for it. */
  close() {
    clearTimeout(this.#retryTimer);
    const ws = this.#ws;
    this.#drop();
    ws?.close(1000, "client closed");
    this.#setStatus({ state: "closed", attempt: 0 });
  }

  #open() {
    /** @type {Socket} */
    let ws;
    try {
      ws = new this.#opts.WebSocket(this.#url);
    } catch (err) {
      // Only a malformed URL throws here; retrying cannot fix it.
      this.#emit("error", new GatewayError(ErrorCode.BAD_URL, `cannot connect to ${JSON.stringify(this.#shownURL)}: ${errorText(err)}`));
      this.#setStatus({ state: "closed", attempt: this.#attempt, reason: "bad WebSocket URL" });
      return;
    }
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.#attempt = 0;
      this.#setStatus({ state: "open", attempt: 0 });
      this.#startPing();
      this.#sendTopics("subscribe", [...this.#topics.keys()]);
    };
    ws.onmessage = (ev) => this.#receive(ev.data);
    ws.onclose = (ev) => {
      if (opened) {
        this.#lost(`connection lost (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`);
      } else {
        // Browsers hide why a handshake failed (refused, unreachable, or
        // $connect answered non-2xx): all look like close code 1006.
        this.#emit(
          "error",
          new GatewayError(ErrorCode.CONNECT_FAILED, `could not connect to ${this.#shownURL}: the server refused the connection or is unreachable`),
        );
        this.#lost("could not connect");
      }
    };
    ws.onerror = null; // always followed by close, which says more
    this.#setStatus({ state: "connecting", attempt: this.#attempt });
  }

  /** The current socket is finished; schedule the next. @param {string} reason */
  #lost(reason) {
    this.#drop();
    const retryInMs = Math.round(backoffDelay(this.#attempt, this.#opts, this.#opts.random));
    this.#attempt++;
    this.#setStatus({ state: "waiting", attempt: this.#attempt, retryInMs, reason });
    this.#retryTimer = setTimeout(() => this.#open(), retryInMs);
  }

  /** Forgets the current socket: its late events are ignored. */
  #drop() {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    const ws = this.#ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
    this.#ws = null;
    let changed = false;
    for (const [t, active] of this.#topics) {
      changed ||= active;
      this.#topics.set(t, false);
    }
    if (changed) {
      this.#emit("subscriptions", this.subscriptions);
    }
  }

  #startPing() {
    this.#pingTimer = setInterval(() => {
      this.#send({ action: "ping" });
      clearTimeout(this.#pongTimer);
      // A half-open TCP connection can look open for many minutes; no
      // answer to a ping is the only sign a browser gets.
      this.#pongTimer = setTimeout(() => {
        const ws = this.#ws;
        this.#lost(`no answer to ping within ${this.#opts.pongTimeoutMs / 1000} s`);
        ws?.close(4000, "ping timeout");
      }, this.#opts.pongTimeoutMs);
    }, this.#opts.pingIntervalMs);
  }

  /** @param {unknown} raw */
  #receive(raw) {
    clearTimeout(this.#pongTimer); // any frame proves the connection alive
    const frame = parseFrame(raw);
    if (frame instanceof GatewayError) {
      this.#emit("error", frame);
      return;
    }
    switch (frame.type) {
      case "subscribed":
      case "unsubscribed": {
        const active = frame.type === "subscribed";
        let changed = false;
        for (const t of frame.topics) {
          // Only topics still wanted: an unsubscribe may be in flight.
          if (this.#topics.has(t) && this.#topics.get(t) !== active) {
            this.#topics.set(t, active);
            changed = true;
          }
        }
        if (changed) {
          this.#emit("subscriptions", this.subscriptions);
        }
        break;
      }
      case "message":
        this.#emit("message", frame);
        break;
      case "error":
        this.#emit("error", new GatewayError(frame.code, frame.message, raw));
        break;
      case "pong":
        break;
    }
  }

  /**
   * @param {"subscribe" | "unsubscribe"} action
   * @param {string[]} topics
   */
  #sendTopics(action, topics) {
    for (let i = 0; i < topics.length; i += MAX_TOPICS_PER_FRAME) {
      this.#send({ action, topics: topics.slice(i, i + MAX_TOPICS_PER_FRAME) });
    }
  }

  /** Sends if open; otherwise the next open sends what matters (the topics). @param {ClientFrame} frame */
  #send(frame) {
    if (this.#ws?.readyState === OPEN) {
      this.#ws.send(JSON.stringify(frame));
    }
  }

  /** @param {Status} status */
  #setStatus(status) {
    this.#status = status;
    this.#emit("status", status);
  }

  /**
   * @template {keyof EventMap} K
   * @param {K} type
   * @param {EventMap[K]} value
   */
  #emit(type, value) {
    const set = /** @type {Set<(value: EventMap[K]) => void>} */ (this.#listeners[type]);
    for (const listener of [...set]) {
      try {
        listener(value);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}

/** @param {unknown} value @returns {value is Record<string, unknown>} */
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** @param {unknown} value @returns {value is string[]} */
function isStringArray(value) {
  return Array.isArray(value) && value.every((t) => typeof t === "string");
}

/** @param {unknown} value @returns {value is Record<string, string>} */
function isStringRecord(value) {
  return isRecord(value) && Object.values(value).every((v) => typeof v === "string");
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}
