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
 * Or a handler per topic or pattern ("orders.*" is every topic under
 * "orders.", "*" every topic), and publishing from the client, answered by
 * a promise:
 *
 *     const stop = client.subscribe("chat.*", (m) => show(m.topic, m.data));
 *     const { offset } = await client.publish("chat.lobby", { text: "hi" });
 *
 * The wire format is docs/protocol.md's "WebSocket frames": JSON text frames,
 * typed below. Subscriptions are remembered and sent again on every new
 * connection, because API Gateway forgets them with the connection. The
 * client never throws on what the server sends: a frame it does not
 * understand is reported as an "error" event and dropped.
 *
 * Messages of a topic carry a position (epoch, offset). The client uses it
 * so that the app sees each message once and in offset order: it drops
 * duplicates, holds a message that arrives after a gap until the gap fills
 * (gapTimeoutMs), and on every resubscribe asks the server to recover what
 * was published since the last position it delivered. What it cannot
 * recover it reports as a "resync" event: the app reloads from its own
 * source of truth, and the client carries on from the topic's new position.
 *
 *     client.on("resync", ({ topic }) => reload(topic));
 *
 * A backend can also send to a user (every connection whose connect token
 * names that user): such a message carries `user` instead of a topic, and
 * no position. And it can end a connection with a reason: a "disconnect"
 * event says so, and the client reconnects only if the server allows it.
 *
 *     client.on("disconnect", ({ reason, reconnect }) => reconnect || signOut(reason));
 *
 * Plain ES module with JSDoc types, checked by tsc (web/tsconfig.json): no
 * build step, no dependencies.
 */

/** Topic names the gateway accepts (internal/wsproto, docs/protocol.md). */
export const TOPIC_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Whether a subscription to `pattern` receives the messages of `topic`, as
 * the server decides it: "*" matches every topic, "a.*" every topic that
 * starts with "a." (so "a.b" and "a.b.c", not "a"), and anything else
 * only the topic of that name.
 * @param {string} pattern a topic, or a pattern
 * @param {string} topic
 */
export function matchTopic(pattern, topic) {
  if (pattern === "*") {
    return true;
  }
  if (pattern.endsWith(".*")) {
    return topic.startsWith(pattern.slice(0, -1));
  }
  return pattern === topic;
}

/** @param {string} name */
function isPattern(name) {
  return name === "*" || name.endsWith(".*");
}

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
 * A message's place in its topic's stream. Within one epoch offsets grow by
 * exactly 1 per publish; a new epoch means the old offsets mean nothing.
 * Offset 0 is the position of a topic with nothing published yet.
 * @typedef {{ epoch: string, offset: number }} Position
 */

/**
 * Frames the client sends. recover asks for every message after the given
 * position of each topic.
 * @typedef {{ action: "subscribe" | "unsubscribe", topics: string[], recover?: Record<string, Position> }} TopicsRequest
 * @typedef {{ action: "ping" }} PingRequest
 * @typedef {{ action: "publish", topic: string, data: JSONValue, attributes?: Record<string, string>, ref: string }} PublishRequest
 * @typedef {TopicsRequest | PingRequest | PublishRequest} ClientFrame
 */

/**
 * Frames the server sends. A subscribed frame carries each topic's latest
 * position when the subscription was stored, and, for every topic the
 * subscribe asked to recover, whether the missed messages are coming.
 * Messages of a topic publish carry their position; others have none.
 * A message sent to a user names the user instead of a topic; the two
 * shapes are told apart by which of topic and user is set.
 * @typedef {{
 *   type: "subscribed" | "unsubscribed",
 *   topics: string[],
 *   positions?: Record<string, Position>,
 *   recovered?: Record<string, boolean>,
 * }} TopicsFrame
 * @typedef {{ type: "pong" }} PongFrame
 * @typedef {{
 *   type: "message",
 *   topic: string,
 *   user?: undefined,
 *   id: string,
 *   data: JSONValue,
 *   attributes?: Record<string, string>,
 *   publishTime: string,
 *   offset?: number,
 *   epoch?: string,
 * }} TopicMessageFrame
 * @typedef {{
 *   type: "message",
 *   user: string,
 *   topic?: undefined,
 *   id: string,
 *   data: JSONValue,
 *   attributes?: Record<string, string>,
 *   publishTime: string,
 *   offset?: undefined,
 *   epoch?: undefined,
 * }} UserMessageFrame
 * @typedef {TopicMessageFrame | UserMessageFrame} MessageFrame
 * @typedef {{ type: "error", code: string, message: string, ref?: string }} ErrorFrame
 * @typedef {{ type: "disconnect", reason: string, reconnect: boolean }} DisconnectFrame
 * @typedef {{ type: "published", topic: string, id: string, offset: number, epoch: string, ref: string }} PublishedFrame
 * @typedef {TopicsFrame | PongFrame | MessageFrame | ErrorFrame | DisconnectFrame | PublishedFrame} ServerFrame
 */

/**
 * What publish() resolves to: the message's id and its position in its
 * topic's stream, as the server stored it.
 * @typedef {{ topic: string, id: string, offset: number, epoch: string }} Published
 */

/**
 * Called with each message of a topic that a subscribe() handler's topic
 * or pattern matches, after the "message" event, in the same order.
 * @callback TopicHandler
 * @param {TopicMessageFrame} message
 * @returns {void}
 */

/**
 * Where the connection stands:
 * - "connecting": a socket is opening (attempt 0 is the first one);
 * - "open": connected, subscriptions are being (re)sent;
 * - "waiting": the last socket closed or failed; the next attempt is in
 *   retryInMs, and reason says what happened;
 * - "closed": close() was called, or the server disconnected the client
 *   and told it not to reconnect (reason says so, with the server's
 *   reason); nothing happens until connect().
 * @typedef {"connecting" | "open" | "waiting" | "closed"} State
 * @typedef {{ state: State, attempt: number, retryInMs?: number, reason?: string }} Status
 */

/**
 * A subscription the client holds; active once the server confirmed it on
 * the current connection.
 * @typedef {{ topic: string, active: boolean }} Subscription
 */

/**
 * Why a topic needs a resync:
 * - "not_recovered": the server could not recover the missed messages
 *   (another epoch, past the retention, or too many);
 * - "new_epoch": the topic's position was reset, so offsets start over;
 * - "gap": messages stayed missing even after asking for them again.
 * @typedef {"not_recovered" | "new_epoch" | "gap"} ResyncReason
 * @typedef {{ topic: string, reason: ResyncReason }} Resync
 */

/**
 * Missed messages of a topic were recovered and delivered: count of them
 * (0 when nothing was missed), after a reconnect or after a gap.
 * @typedef {{ topic: string, count: number, cause: "reconnect" | "gap" }} Recovered
 */

/**
 * The server ended the connection on purpose (a backend's Disconnect):
 * reason is the backend's words ("" if it gave none); with reconnect false
 * the client stays closed, otherwise it reconnects as after any drop.
 * @typedef {{ reason: string, reconnect: boolean }} Disconnect
 */

/**
 * @typedef {{
 *   message: MessageFrame,
 *   status: Status,
 *   error: GatewayError,
 *   subscriptions: Subscription[],
 *   resync: Resync,
 *   recovered: Recovered,
 *   disconnect: Disconnect,
 * }} EventMap
 */

/**
 * The subset of the browser's WebSocket the client uses; tests pass a fake.
 * The handlers take `any`: each implementation (the DOM's, the ws
 * package's) types its own events, which a narrower type here would refuse.
 * The client reads ev.data of a message and ev.code, ev.reason of a close.
 * @typedef {{
 *   readonly readyState: number,
 *   onopen: ((ev: any) => void) | null,
 *   onmessage: ((ev: any) => void) | null,
 *   onclose: ((ev: any) => void) | null,
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
 * @property {number} [gapTimeoutMs] How long a gap may last without
 *   progress (a message that arrived after it is held meanwhile) before the
 *   client asks the server for the missing ones, and then before it gives
 *   up on them. Default 1 s.
 * @property {number} [publishTimeoutMs] How long publish() waits for the
 *   server's answer before it rejects (code "timeout"). Default 10 s.
 * @property {SocketConstructor} [WebSocket] The WebSocket implementation:
 *   globalThis.WebSocket by default; under Node 20, which has none, the
 *   ws package's.
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
  /** publish() while the connection is not open: nothing was sent. */
  NOT_CONNECTED: "not_connected",
  /** The connection closed before the server answered a publish: it may or may not have been published. */
  CONNECTION_LOST: "connection_lost",
  /** No answer to a publish within publishTimeoutMs: it may or may not have been published. */
  TIMEOUT: "timeout",
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
    case "unsubscribed": {
      if (!isStringArray(v.topics)) {
        return unexpected(`${v.type} without a list of topics`);
      }
      /** @type {TopicsFrame} */
      const f = { type: v.type, topics: v.topics };
      if (v.positions !== undefined) {
        if (!isRecord(v.positions) || !Object.values(v.positions).every(isPosition)) {
          return unexpected("positions are not {epoch, offset} pairs");
        }
        f.positions = /** @type {Record<string, Position>} */ (v.positions);
      }
      if (v.recovered !== undefined) {
        if (!isRecord(v.recovered) || !Object.values(v.recovered).every((r) => typeof r === "boolean")) {
          return unexpected("recovered is not a map of booleans");
        }
        f.recovered = /** @type {Record<string, boolean>} */ (v.recovered);
      }
      return f;
    }
    case "pong":
      return { type: "pong" };
    case "message": {
      const { topic, user, id, data, attributes, publishTime, offset, epoch } = v;
      const to = typeof topic === "string" ? "topic" : typeof user === "string" && topic === undefined ? "user" : null;
      if (to === null || typeof id !== "string" || typeof publishTime !== "string" || data === undefined) {
        return unexpected("message without topic (or user), id, data and publishTime");
      }
      if (attributes !== undefined && !isStringRecord(attributes)) {
        return unexpected("message attributes are not strings");
      }
      if (to === "user") {
        // A user's messages have no stream to be ordered in: no position.
        /** @type {UserMessageFrame} */
        const u = { type: "message", user: /** @type {string} */ (user), id, data: /** @type {JSONValue} */ (data), publishTime };
        if (attributes !== undefined) {
          u.attributes = attributes;
        }
        return u;
      }
      /** @type {TopicMessageFrame} */
      const m = { type: "message", topic: /** @type {string} */ (topic), id, data: /** @type {JSONValue} */ (data), publishTime };
      if (attributes !== undefined) {
        m.attributes = attributes;
      }
      // Both or neither: an offset means nothing without its epoch.
      if (offset !== undefined || epoch !== undefined) {
        if (!isPosition({ epoch, offset }) || offset === 0) {
          return unexpected("message offset is not a whole number from 1 with an epoch");
        }
        m.offset = /** @type {number} */ (offset);
        m.epoch = /** @type {string} */ (epoch);
      }
      return m;
    }
    case "error":
      if (typeof v.code === "string" && typeof v.message === "string" && (v.ref === undefined || typeof v.ref === "string")) {
        /** @type {ErrorFrame} */
        const e = { type: "error", code: v.code, message: v.message };
        if (v.ref !== undefined) {
          e.ref = /** @type {string} */ (v.ref);
        }
        return e;
      }
      return unexpected("error without code and message");
    case "published": {
      const { topic, id, offset, epoch, ref } = v;
      if (typeof topic !== "string" || typeof id !== "string" || typeof ref !== "string" || !isPosition({ epoch, offset }) || offset === 0) {
        return unexpected("published without topic, id, ref and a position");
      }
      return { type: "published", topic, id, offset: /** @type {number} */ (offset), epoch: /** @type {string} */ (epoch), ref };
    }
    case "disconnect": {
      // Absent fields take their protobuf defaults: a server that leaves
      // out a false reconnect or an empty reason still means them.
      const { reason = "", reconnect = false } = v;
      if (typeof reason !== "string" || typeof reconnect !== "boolean") {
        return unexpected("disconnect with a reason that is not a string or reconnect that is not a boolean");
      }
      return { type: "disconnect", reason, reconnect };
    }
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
 * @param {boolean} patterns whether "*" and "{topic}.*" are allowed too
 * @returns {string[]}
 */
function checkTopics(topics, patterns) {
  const list = Array.isArray(topics) ? [...topics] : [topics]; // anything else, a string or not, is one name
  for (const t of list) {
    const name = patterns && typeof t === "string" && t.endsWith(".*") ? t.slice(0, -2) : t;
    if (typeof t !== "string" || !(TOPIC_PATTERN.test(name) || (patterns && t === "*"))) {
      throw new GatewayError(
        ErrorCode.INVALID_TOPIC,
        `invalid topic ${JSON.stringify(t)}: use 1 to 128 letters, digits and . _ : - (not starting with a symbol)` +
          (patterns ? `, or "*", or such a name followed by ".*"` : ""),
      );
    }
  }
  return list;
}

const OPEN = 1; // WebSocket.OPEN, without needing the global

/** @typedef {TopicMessageFrame & Position} PositionedMessage a message of a topic publish */

/**
 * What the client knows of one subscribed topic's stream.
 * @typedef {object} Stream
 * @property {Position | null} pos The last position delivered to the app,
 *   or where the subscription started; null until the server says.
 * @property {Map<number, PositionedMessage>} held Messages above pos + 1,
 *   by offset, waiting for the ones below them (any while pos is null).
 * @property {number} latest The highest offset known to exist in pos's epoch.
 * @property {ReturnType<typeof setTimeout> | undefined} timer The deadline
 *   of the current gap.
 * @property {Ask | null} asked The recover the server was asked for.
 * @property {Set<string>} retired Epochs left behind: their late messages
 *   were published before the reset the app resynced for, so they are dropped.
 */

/**
 * A recover sent from `from`; until is the offset it must reach, known once
 * the server answered that the messages are coming. had: the offsets held
 * when it was sent, which are not counted as recovered.
 * @typedef {{ from: Position, until: number | null, cause: Recovered["cause"], had: number[] }} Ask
 */

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
  /** @type {Map<string, Stream>} topic → its stream, for every topic (not pattern) held; kept across reconnects */
  #streams = new Map();
  /**
   * @type {Map<string, Set<{ handler: TopicHandler | undefined, seq: number }>>}
   * topic or pattern → the subscribe() calls holding it (seq numbers them
   * in call order), each with its handler if it has one; a topic is in
   * #topics exactly while it has a hold
   */
  #holds = new Map();
  #lastHold = 0;
  /** @type {Map<string, { resolve: (p: Published) => void, reject: (e: GatewayError) => void, timer: ReturnType<typeof setTimeout> }>} ref → a publish awaiting its answer */
  #pending = new Map();
  #lastRef = 0;
  /** @type {{ [K in keyof EventMap]: Set<(value: EventMap[K]) => void> }} */
  #listeners = {
    message: new Set(),
    status: new Set(),
    error: new Set(),
    subscriptions: new Set(),
    resync: new Set(),
    recovered: new Set(),
    disconnect: new Set(),
  };
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
      gapTimeoutMs: options.gapTimeoutMs ?? 1000,
      publishTimeoutMs: options.publishTimeoutMs ?? 10_000,
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
   * Subscribes to topics or patterns, now if connected and again after
   * every reconnect. A pattern is "*" (every topic) or a topic name
   * followed by ".*" (every topic under that name and a dot); its messages
   * name their own topic. With a handler, the handler gets every message
   * whose topic matches (matchTopic), besides the "message" event.
   * Throws a GatewayError (code "invalid_topic") for an invalid name and
   * then subscribes to none of them.
   *
   * Each message is ordered and recovered by its own topic's position, so
   * only topics subscribed by name are: a message that only a pattern
   * brought passes straight through, as does what a pattern missed while
   * away.
   * @param {string | string[]} topics a topic, a pattern, or a list of them
   * @param {TopicHandler} [handler]
   * @returns {() => void} undoes this call (once): drops its handler, and
   *   unsubscribes from each of its topics that no other call holds
   */
  subscribe(topics, handler) {
    const list = checkTopics(topics, true);
    const hold = { handler, seq: ++this.#lastHold };
    for (const t of list) {
      if (!this.#topics.has(t)) {
        this.#topics.set(t, false);
        this.#holds.set(t, new Set());
        if (!isPattern(t)) {
          this.#streams.set(t, { pos: null, held: new Map(), latest: 0, timer: undefined, asked: null, retired: new Set() });
        }
      }
      this.#holds.get(t)?.add(hold);
    }
    this.#emit("subscriptions", this.subscriptions);
    this.#sendTopics("subscribe", list);
    return () => {
      const released = list.filter((t) => {
        const holds = this.#holds.get(t);
        return holds !== undefined && holds.delete(hold) && holds.size === 0;
      });
      if (released.length > 0) {
        this.unsubscribe(released);
      }
    };
  }

  /**
   * Stops receiving topics or patterns and forgets them, positions and
   * handlers included, whichever subscribe() calls held them.
   * @param {string | string[]} topics
   */
  unsubscribe(topics) {
    const list = checkTopics(topics, true);
    for (const t of list) {
      this.#topics.delete(t);
      this.#holds.delete(t);
      clearTimeout(this.#streams.get(t)?.timer);
      this.#streams.delete(t);
    }
    this.#emit("subscriptions", this.subscriptions);
    this.#sendTopics("unsubscribe", list);
  }

  /**
   * Publishes a message to a topic over this connection; it is fanned out
   * like a backend's, to this client too if subscribed. Resolves with the
   * message's id and position once the server has stored it. Rejects with
   * a GatewayError: the server's code ("forbidden", "rate_limited",
   * "invalid_topic", "bad_request"), or the client's: "invalid_topic" and
   * "not_connected" (nothing was sent), "connection_lost" and "timeout"
   * (no answer came: the message may or may not have been published).
   * @param {string} topic a topic, not a pattern
   * @param {JSONValue} data
   * @param {Record<string, string>} [attributes]
   * @returns {Promise<Published>}
   */
  publish(topic, data, attributes) {
    try {
      checkTopics(topic, false);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#ws?.readyState !== OPEN) {
      return Promise.reject(new GatewayError(ErrorCode.NOT_CONNECTED, `cannot publish to ${topic}: not connected (${this.#status.state})`));
    }
    // Refs only need to tell apart the publishes awaiting an answer on one connection.
    const ref = `p${++this.#lastRef}`;
    /** @type {PublishRequest} */
    const frame = { action: "publish", topic, data, ref };
    if (attributes !== undefined) {
      frame.attributes = attributes;
    }
    let text;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      return Promise.reject(new GatewayError("bad_request", `cannot publish to ${topic}: ${errorText(err)}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new GatewayError(ErrorCode.TIMEOUT, `no answer to the publish to ${topic} within ${this.#opts.publishTimeoutMs / 1000} s: it may or may not have been published`));
      }, this.#opts.publishTimeoutMs);
      this.#pending.set(ref, { resolve, reject, timer });
      this.#ws?.send(text);
    });
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
      this.#sendTopics("subscribe", [...this.#topics.keys()], true);
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
    // Their answers would have come on this socket; the next one cannot say.
    for (const [ref, p] of this.#pending) {
      this.#pending.delete(ref);
      clearTimeout(p.timer);
      p.reject(new GatewayError(ErrorCode.CONNECTION_LOST, "the connection closed before the server answered the publish: it may or may not have been published"));
    }
    let changed = false;
    for (const [t, active] of this.#topics) {
      changed ||= active;
      this.#topics.set(t, false);
    }
    if (changed) {
      this.#emit("subscriptions", this.subscriptions);
    }
    // What was held stays held; the next connection's recover fills the gaps.
    for (const s of this.#streams.values()) {
      clearTimeout(s.timer);
      s.timer = undefined;
      s.asked = null;
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
        if (active) {
          for (const t of frame.topics) {
            const s = this.#streams.get(t);
            if (s) {
              this.#started(t, s, frame);
            }
          }
        }
        break;
      }
      case "message":
        this.#onMessage(frame);
        break;
      case "error": {
        // An answer to a publish goes to its promise only.
        const p = frame.ref === undefined ? undefined : this.#pending.get(frame.ref);
        const err = new GatewayError(frame.code, frame.message, raw);
        if (p && frame.ref !== undefined) {
          this.#pending.delete(frame.ref);
          clearTimeout(p.timer);
          p.reject(err);
        } else {
          this.#emit("error", err);
        }
        break;
      }
      case "published": {
        const p = this.#pending.get(frame.ref);
        if (p) {
          this.#pending.delete(frame.ref);
          clearTimeout(p.timer);
          p.resolve({ topic: frame.topic, id: frame.id, offset: frame.offset, epoch: frame.epoch });
        }
        break; // otherwise its publish timed out: the promise has said so
      }
      case "disconnect":
        this.#disconnected(frame);
        break;
      case "pong":
        break;
    }
  }

  /**
   * The server is about to close this connection on purpose; the client
   * stops using it at once. The close itself is left to the server, which
   * counts the connections it closed (one the client closed first would
   * read as already gone): the client closes it only if the server has not
   * within pongTimeoutMs, so that a server that failed cannot leave a socket
   * open with nobody listening. Held messages and positions are kept, so a
   * later connection (now, or the app's connect()) recovers from them.
   * @param {DisconnectFrame} frame
   */
  #disconnected({ reason, reconnect }) {
    const ws = this.#ws;
    const why = reason ? `disconnected by the server: ${reason}` : "disconnected by the server";
    if (reconnect) {
      this.#lost(why);
    } else {
      this.#drop();
      this.#setStatus({ state: "closed", attempt: 0, reason: why });
    }
    if (ws) {
      const timer = setTimeout(() => ws.close(1000, "disconnected by the server"), this.#opts.pongTimeoutMs);
      ws.onclose = () => clearTimeout(timer);
    }
    // After the status, so that a listener sees where the client stands,
    // and its connect() or close() takes effect.
    this.#emit("disconnect", { reason, reconnect });
  }

  /**
   * A topic's subscription was stored: the frame says where it starts and
   * whether what the client asked to recover is coming.
   * @param {string} topic
   * @param {Stream} s
   * @param {TopicsFrame} frame
   */
  #started(topic, s, frame) {
    const p = frame.positions?.[topic];
    const recovered = frame.recovered?.[topic];
    const asked = s.asked;
    if (asked && recovered === false) {
      this.#restart(topic, s, "not_recovered", p ?? s.pos);
      return;
    }
    if (asked && recovered === true) {
      // The replay runs up to where the topic stood when the subscription was stored.
      asked.until = p?.epoch === asked.from.epoch ? p.offset : asked.from.offset;
    } else {
      s.asked = null; // a server that does not recover: nothing more is coming
    }
    if (!p) {
      if (s.pos === null) {
        this.#restart(topic, s, null, null); // a server that sends no positions: deliver what is held
        return;
      }
    } else if (s.pos === null) {
      // The server reads positions just after storing the subscription, so
      // a message that came through it can be at or below p: the
      // subscription starts before the first of them.
      let start = p.offset;
      for (const m of s.held.values()) {
        if (m.epoch === p.epoch) {
          start = Math.min(start, m.offset - 1);
        }
      }
      this.#restart(topic, s, null, { epoch: p.epoch, offset: start });
      if (this.#streams.get(topic) !== s) {
        return;
      }
      s.latest = Math.max(s.latest, p.offset);
    } else if (p.epoch !== s.pos.epoch) {
      this.#restart(topic, s, "new_epoch", p);
      return;
    } else {
      s.latest = Math.max(s.latest, p.offset);
    }
    this.#advance(topic, s);
  }

  /** @param {MessageFrame} m */
  #onMessage(m) {
    if (m.user !== undefined) {
      this.#emit("message", m); // a user's messages are not a topic's stream: nothing to order them by
      return;
    }
    const s = this.#streams.get(m.topic);
    if (m.offset === undefined || m.epoch === undefined || !s) {
      this.#deliver(m); // no position (or a topic held only by a pattern, or no longer held): nothing to order it by
      return;
    }
    const pm = /** @type {PositionedMessage} */ (m);
    if (s.retired.has(pm.epoch)) {
      return;
    }
    if (s.pos === null) {
      if (this.#topics.get(m.topic)) {
        // Confirmed, yet the server named no position: start at this message.
        s.pos = { epoch: pm.epoch, offset: pm.offset - 1 };
      }
      // Otherwise held until the subscribed frame says where the subscription starts.
    } else if (pm.epoch !== s.pos.epoch) {
      this.#restart(m.topic, s, "new_epoch", { epoch: pm.epoch, offset: pm.offset - 1 });
      if (this.#streams.get(m.topic) !== s) {
        return;
      }
    }
    if ((s.pos !== null && pm.offset <= s.pos.offset) || s.held.has(pm.offset)) {
      return; // delivered or held already: a replay, or the server's at-least-once
    }
    s.held.set(pm.offset, pm);
    this.#advance(m.topic, s);
  }

  /**
   * Delivers what follows pos without a hole, reports a recovery that has
   * completed, and keeps a deadline running while a gap remains.
   * @param {string} topic
   * @param {Stream} s
   */
  #advance(topic, s) {
    const before = s.pos?.offset;
    if (s.pos !== null) {
      // The recovery may be complete already (nothing was missed), or with
      // any of the messages below; it is reported right after its last one.
      if (!this.#recoveryDone(topic, s)) {
        return;
      }
      for (let m = s.held.get(s.pos.offset + 1); m; m = s.held.get(s.pos.offset + 1)) {
        s.held.delete(m.offset);
        s.pos = { epoch: s.pos.epoch, offset: m.offset };
        this.#deliver(m);
        if (this.#streams.get(topic) !== s || !this.#recoveryDone(topic, s)) {
          return; // a listener unsubscribed
        }
      }
      s.latest = Math.max(s.latest, s.pos.offset);
    }
    const gap = s.held.size > 0 || (s.pos !== null && s.latest > s.pos.offset);
    // The deadline runs from the last progress: a long replay, posted one
    // message at a time, is not given up on while it keeps coming.
    if (!gap || s.pos?.offset !== before) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
    if (gap && s.timer === undefined) {
      s.timer = setTimeout(() => this.#gapExpired(topic, s), this.#opts.gapTimeoutMs);
    }
  }

  /**
   * Emits "recovered" once pos has reached what the server said it would
   * replay. Returns false if a listener let go of the topic.
   * @param {string} topic
   * @param {Stream} s
   */
  #recoveryDone(topic, s) {
    const a = s.asked;
    if (a === null || a.until === null || s.pos === null || s.pos.offset < a.until) {
      return true;
    }
    s.asked = null;
    const until = a.until;
    const count = until - a.from.offset - a.had.filter((o) => o <= until).length;
    this.#emit("recovered", { topic, count: Math.max(0, count), cause: a.cause });
    return this.#streams.get(topic) === s;
  }

  /**
   * A gap outlived gapTimeoutMs: ask the server for what is missing, once;
   * if the answer did not fill it either, give up on it with a resync.
   * @param {string} topic
   * @param {Stream} s
   */
  #gapExpired(topic, s) {
    s.timer = undefined;
    if (this.#streams.get(topic) !== s) {
      return;
    }
    if (s.pos === null) {
      this.#restart(topic, s, null, null); // no position came to start from: deliver what is held
    } else if (s.asked === null) {
      // Only on a confirmed subscription: otherwise the next connection asks.
      // No new deadline until the answer, whose #started sets one.
      const from = s.pos;
      if (this.#topics.get(topic) && this.#send({ action: "subscribe", topics: [topic], recover: { [topic]: from } })) {
        s.asked = { from, until: null, cause: "gap", had: [...s.held.keys()] };
      }
    } else if (s.asked.until !== null) {
      this.#restart(topic, s, "gap", s.pos);
    }
  }

  /**
   * Continues topic's stream from `from`. With a reason, the app is told to
   * resync first; then everything held above `from` is delivered in order,
   * holes and all, and the position skips to the latest known, since the
   * app's reload covers what was published before it. Without a reason,
   * `from` is just where the subscription starts, and gaps above it are
   * waited for as usual.
   * @param {string} topic
   * @param {Stream} s
   * @param {ResyncReason | null} reason
   * @param {Position | null} from
   */
  #restart(topic, s, reason, from) {
    clearTimeout(s.timer);
    s.timer = undefined;
    s.asked = null;
    const old = s.pos;
    if (from !== null && old !== null && from.epoch !== old.epoch) {
      s.retired.add(old.epoch);
    }
    if (from !== null && old !== null && from.epoch === old.epoch) {
      from = { epoch: from.epoch, offset: Math.max(from.offset, old.offset) }; // never back to what was delivered
      s.latest = Math.max(s.latest, from.offset);
    } else {
      s.latest = from?.offset ?? 0;
    }
    const kept = [...s.held.values()]
      .filter((m) => from === null || (m.epoch === from.epoch && m.offset > from.offset))
      .sort((a, b) => a.offset - b.offset);
    s.held.clear();
    s.pos = from;
    if (reason === null && from !== null) {
      for (const m of kept) {
        s.held.set(m.offset, m);
      }
    } else {
      if (reason !== null) {
        this.#emit("resync", { topic, reason });
      }
      for (const m of kept) {
        if (this.#streams.get(topic) !== s) {
          return;
        }
        s.pos = { epoch: m.epoch, offset: m.offset };
        this.#deliver(m);
      }
      if (this.#streams.get(topic) !== s) {
        return;
      }
      if (s.pos !== null && s.latest > s.pos.offset) {
        s.pos = { epoch: s.pos.epoch, offset: s.latest };
      }
    }
    this.#advance(topic, s);
  }

  /**
   * @param {"subscribe" | "unsubscribe"} action
   * @param {string[]} topics
   * @param {boolean} [recover] ask to recover each topic from its position:
   *   on a new connection, whose subscription starts wherever the topic
   *   stands now
   */
  #sendTopics(action, topics, recover = false) {
    for (let i = 0; i < topics.length; i += MAX_TOPICS_PER_FRAME) {
      /** @type {TopicsRequest} */
      const frame = { action, topics: topics.slice(i, i + MAX_TOPICS_PER_FRAME) };
      /** @type {Record<string, Position>} */
      const from = {};
      for (const t of recover ? frame.topics : []) {
        const pos = this.#streams.get(t)?.pos;
        if (pos) {
          from[t] = pos;
        }
      }
      if (Object.keys(from).length > 0) {
        frame.recover = from;
      }
      if (this.#send(frame) && frame.recover) {
        for (const [t, pos] of Object.entries(frame.recover)) {
          const s = this.#streams.get(t);
          if (s) {
            s.asked = { from: pos, until: null, cause: "reconnect", had: [...s.held.keys()] };
          }
        }
      }
    }
  }

  /**
   * Sends if open; otherwise the next open sends what matters (the topics).
   * @param {ClientFrame} frame
   * @returns {boolean} whether it was sent
   */
  #send(frame) {
    if (this.#ws?.readyState === OPEN) {
      this.#ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /**
   * Hands a message to the app: the "message" event, then every handler
   * whose topic or pattern matches, each once however many of its
   * subscriptions match, in the order they were first subscribed.
   * @param {MessageFrame} m
   */
  #deliver(m) {
    this.#emit("message", m);
    if (m.topic === undefined) {
      return;
    }
    /** @type {Map<TopicHandler, number>} handler → its first subscribe's seq */
    const matched = new Map();
    for (const [t, holds] of this.#holds) {
      if (matchTopic(t, m.topic)) {
        for (const { handler, seq } of holds) {
          const first = handler && matched.get(handler);
          if (handler && (first === undefined || seq < first)) {
            matched.set(handler, seq);
          }
        }
      }
    }
    const handlers = [...matched].sort((a, b) => a[1] - b[1]).map(([h]) => h);
    for (const handler of handlers) {
      try {
        handler(m);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
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

/** @param {unknown} value @returns {value is Position} */
function isPosition(value) {
  return isRecord(value) && typeof value.epoch === "string" && Number.isSafeInteger(value.offset) && Number(value.offset) >= 0;
}

/** @param {unknown} value @returns {value is Record<string, string>} */
function isStringRecord(value) {
  return isRecord(value) && Object.values(value).every((v) => typeof v === "string");
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}
