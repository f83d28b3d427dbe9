// Unit tests of the browser client's logic against a fake WebSocket and
// fake timers: node --test web/test/ (make web-check). The real browser
// against the real stack is internal/devstack/browser_test.go.

import { test } from "node:test";
import assert from "node:assert/strict";

import { GatewayClient, GatewayError, backoffDelay, parseFrame, matchTopic, MAX_TOPICS_PER_FRAME } from "../static/wsgateway.js";

/** A WebSocket the test plays the server of. */
class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  /** @type {FakeSocket[]} */
  static all = [];
  static get last() {
    return FakeSocket.all.at(-1);
  }

  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    assert.equal(this.readyState, FakeSocket.OPEN, "send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = FakeSocket.CLOSED;
  }
  // Server side.
  accept() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.({});
  }
  refuse() {
    this.readyState = FakeSocket.CLOSED;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: "" });
  }
  drop(code = 1000, reason = "") {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
  deliver(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
}

/**
 * setTimeout and setInterval on a clock that only tick(ms) moves, installed
 * on globalThis for one test. node:test's mock.timers does the same, but on
 * Node 20 it prints an ExperimentalWarning.
 */
function fakeTimers(t) {
  let now = 0;
  let lastId = 0;
  /** @type {Map<number, { at: number, every: number | null, fn: Function, args: unknown[] }>} */
  const timers = new Map();
  // Like Node and browsers, a delay under 1 ms waits 1 ms (so an interval of 0 cannot spin).
  const add = (every) => (fn, ms, ...args) => {
    const delay = Math.max(1, Number(ms) || 0);
    timers.set(++lastId, { at: now + delay, every: every ? delay : null, fn, args });
    return lastId;
  };
  const clear = (id) => void timers.delete(id);
  const saved = { setTimeout, setInterval, clearTimeout, clearInterval };
  Object.assign(globalThis, { setTimeout: add(false), setInterval: add(true), clearTimeout: clear, clearInterval: clear });
  t.after(() => Object.assign(globalThis, saved));

  /** Runs, in order, every timer due in the next ms, including those scheduled meanwhile; a callback's exception propagates. */
  return function tick(ms) {
    const until = now + ms;
    for (;;) {
      let next;
      for (const [id, timer] of timers) {
        // Earliest first; on a tie, the one set first (Map keeps insertion order, ids grow).
        if (timer.at <= until && (next === undefined || timer.at < timers.get(next).at)) {
          next = id;
        }
      }
      if (next === undefined) {
        break;
      }
      const timer = timers.get(next);
      now = timer.at;
      if (timer.every === null) {
        timers.delete(next);
      } else {
        timer.at += timer.every;
      }
      timer.fn(...timer.args);
    }
    now = until;
  };
}

/** A client on a fresh fake, with fake timers and everything it emits recorded. */
function setup(t, options = {}) {
  const tick = fakeTimers(t);
  FakeSocket.all = [];
  const client = new GatewayClient("ws://gateway.test/prod", { WebSocket: FakeSocket, random: () => 0.5, ...options });
  const seen = { status: [], message: [], error: [], subscriptions: [], disconnect: [] };
  for (const type of Object.keys(seen)) {
    client.on(type, (v) => seen[type].push(v));
  }
  return { client, seen, tick };
}

test("backoff grows, is capped and jittered", () => {
  const limits = { initialMs: 500, maxMs: 30_000 };
  let previousLow = 0;
  for (let attempt = 0; attempt < 40; attempt++) {
    const low = backoffDelay(attempt, limits, () => 0);
    const high = backoffDelay(attempt, limits, () => 0.999999);
    assert.ok(high <= limits.maxMs, `attempt ${attempt}: ${high} ms is over the cap`);
    assert.ok(low >= limits.initialMs / 2, `attempt ${attempt}: ${low} ms retries too eagerly`);
    assert.ok(high - low >= low * 0.99, `attempt ${attempt}: [${low}, ${high}] is not jittered over half the delay`);
    assert.ok(low >= previousLow, `attempt ${attempt}: the delay shrank`);
    previousLow = low;
  }
  assert.equal(backoffDelay(0, limits, () => 0), 250);
  assert.equal(backoffDelay(3, limits, () => 0), 2000);
  assert.equal(backoffDelay(39, limits, () => 0), 15_000);
});

test("parseFrame decodes every server frame of the protocol", () => {
  for (const [raw, want] of [
    ['{"type":"subscribed","topics":["a","b"]}', { type: "subscribed", topics: ["a", "b"] }],
    ['{"type":"unsubscribed","topics":[]}', { type: "unsubscribed", topics: [] }],
    ['{"type":"pong"}', { type: "pong" }],
    [
      '{"type":"message","topic":"a","id":"m1","data":{"n":[1,null]},"attributes":{"k":"v"},"publishTime":"2025-01-02T03:04:05Z"}',
      { type: "message", topic: "a", id: "m1", data: { n: [1, null] }, attributes: { k: "v" }, publishTime: "2025-01-02T03:04:05Z" },
    ],
    ['{"type":"message","topic":"a","id":"m2","data":null,"publishTime":"t"}', { type: "message", topic: "a", id: "m2", data: null, publishTime: "t" }],
    ['{"type":"error","code":"invalid_topic","message":"no","extra":1}', { type: "error", code: "invalid_topic", message: "no" }],
    [
      '{"type":"message","topic":"a","id":"m3","data":1,"publishTime":"t","offset":46,"epoch":"E"}',
      { type: "message", topic: "a", id: "m3", data: 1, publishTime: "t", offset: 46, epoch: "E" },
    ],
    [
      '{"type":"subscribed","topics":["a","b"],"positions":{"a":{"epoch":"E","offset":45},"b":{"epoch":"F","offset":0}},"recovered":{"a":true}}',
      { type: "subscribed", topics: ["a", "b"], positions: { a: { epoch: "E", offset: 45 }, b: { epoch: "F", offset: 0 } }, recovered: { a: true } },
    ],
    [
      '{"type":"message","user":"alice","id":"u1","data":{"n":1},"attributes":{"k":"v"},"publishTime":"t"}',
      { type: "message", user: "alice", id: "u1", data: { n: 1 }, attributes: { k: "v" }, publishTime: "t" },
    ],
    // A user's message has no position, even if one is sent along.
    ['{"type":"message","user":"alice","id":"u2","data":2,"publishTime":"t","offset":3,"epoch":"E"}', { type: "message", user: "alice", id: "u2", data: 2, publishTime: "t" }],
    ['{"type":"disconnect","reason":"account closed","reconnect":false}', { type: "disconnect", reason: "account closed", reconnect: false }],
    ['{"type":"disconnect","reason":"redeploy","reconnect":true}', { type: "disconnect", reason: "redeploy", reconnect: true }],
    // Left out, as a protobuf JSON encoder may: the defaults, so no reconnect.
    ['{"type":"disconnect"}', { type: "disconnect", reason: "", reconnect: false }],
  ]) {
    assert.deepEqual(parseFrame(raw), want, raw);
  }
});

// Frames outside the protocol: each must come back as an error, not a throw.
const unexpectedFrames = [
  new ArrayBuffer(4),
  "",
  "not json",
  "[]",
  "null",
  '"message"',
  "{}",
  '{"type":"weird"}',
  '{"type":"subscribed","topics":"a"}',
  '{"type":"subscribed","topics":[1]}',
  '{"type":"message","topic":"a","id":"m","publishTime":"t"}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","attributes":{"k":1}}',
  '{"type":"error","message":"no code"}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","offset":0,"epoch":"E"}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","offset":1.5,"epoch":"E"}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","offset":"1","epoch":"E"}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","offset":1}',
  '{"type":"message","topic":"a","id":"m","data":1,"publishTime":"t","epoch":"E"}',
  '{"type":"subscribed","topics":["a"],"positions":{"a":{"epoch":"E"}}}',
  '{"type":"subscribed","topics":["a"],"positions":{"a":{"epoch":"E","offset":-1}}}',
  '{"type":"subscribed","topics":["a"],"recovered":{"a":"yes"}}',
  '{"type":"message","user":7,"id":"m","data":1,"publishTime":"t"}',
  '{"type":"message","topic":null,"user":"alice","id":"m","data":1,"publishTime":"t"}',
  '{"type":"message","user":"alice","id":"m","publishTime":"t"}',
  '{"type":"disconnect","reason":5,"reconnect":false}',
  '{"type":"disconnect","reason":"r","reconnect":"false"}',
];

test("parseFrame reports unexpected frames as errors", () => {
  for (const raw of unexpectedFrames) {
    const got = parseFrame(raw);
    assert.ok(got instanceof GatewayError, `${String(raw)} parsed as ${JSON.stringify(got)}`);
    assert.equal(got.code, "unexpected_frame");
    assert.equal(got.frame, raw);
  }
});

test("unexpected frames become error events and the client keeps going", (t) => {
  const { client, seen } = setup(t);
  client.subscribe("a");
  client.connect();
  FakeSocket.last.accept();
  for (const raw of unexpectedFrames) {
    FakeSocket.last.onmessage({ data: raw });
  }
  assert.equal(seen.error.length, unexpectedFrames.length);
  assert.ok(seen.error.every((e) => e instanceof GatewayError && e.code === "unexpected_frame"));

  FakeSocket.last.deliver({ type: "message", topic: "a", id: "m1", data: "after", publishTime: "t" });
  assert.deepEqual(seen.message.map((m) => m.data), ["after"]);
  assert.equal(client.status.state, "open");
});

test("error frames become typed errors", (t) => {
  const { client, seen } = setup(t);
  client.connect();
  FakeSocket.last.accept();
  FakeSocket.last.deliver({ type: "error", code: "forbidden", message: "the token does not allow topic x" });
  assert.equal(seen.error.length, 1);
  const [err] = seen.error;
  assert.ok(err instanceof GatewayError && err instanceof Error);
  assert.equal(err.code, "forbidden");
  assert.equal(err.message, "the token does not allow topic x");
});

test("subscriptions are sent on open and again after every reconnect", (t) => {
  const { client, seen, tick } = setup(t);
  client.subscribe(["a", "b"]); // before connecting: remembered, not sent
  client.connect();
  const first = FakeSocket.last;
  assert.equal(seen.status.at(-1).state, "connecting");
  first.accept();
  assert.equal(client.status.state, "open");
  assert.deepEqual(first.sent, [{ action: "subscribe", topics: ["a", "b"] }]);

  first.deliver({ type: "subscribed", topics: ["a", "b"] });
  assert.deepEqual(client.subscriptions, [{ topic: "a", active: true }, { topic: "b", active: true }]);
  client.unsubscribe("a");
  assert.deepEqual(first.sent.at(-1), { action: "unsubscribe", topics: ["a"] });
  assert.deepEqual(client.subscriptions, [{ topic: "b", active: true }]);

  first.drop(1000, "deleted");
  const waiting = client.status;
  assert.equal(waiting.state, "waiting");
  assert.match(waiting.reason, /connection lost \(close code 1000: deleted\)/);
  assert.deepEqual(client.subscriptions, [{ topic: "b", active: false }], "a dropped connection holds no subscription");

  tick(waiting.retryInMs - 1);
  assert.equal(FakeSocket.all.length, 1, "reconnected before the backoff delay");
  tick(1);
  assert.equal(FakeSocket.all.length, 2);
  const second = FakeSocket.last;
  second.accept();
  assert.deepEqual(second.sent, [{ action: "subscribe", topics: ["b"] }]);
  second.deliver({ type: "subscribed", topics: ["b"] });
  assert.deepEqual(client.subscriptions, [{ topic: "b", active: true }]);
  second.deliver({ type: "message", topic: "b", id: "m", data: 1, publishTime: "t" });
  assert.equal(seen.message.length, 1);
});

test("a subscribe frame carries at most the gateway's limit of topics", (t) => {
  const { client } = setup(t);
  const topics = Array.from({ length: MAX_TOPICS_PER_FRAME * 2 + 1 }, (_, i) => `t${i}`);
  client.subscribe(topics);
  client.connect();
  FakeSocket.last.accept();
  const sent = FakeSocket.last.sent;
  assert.deepEqual(
    sent.map((f) => f.topics.length),
    [MAX_TOPICS_PER_FRAME, MAX_TOPICS_PER_FRAME, 1],
  );
  assert.deepEqual(sent.flatMap((f) => f.topics), topics);
});

test("failed connects back off up to the cap, and an open resets the backoff", (t) => {
  const { client, seen, tick } = setup(t, { initialBackoffMs: 100, maxBackoffMs: 1000, token: "s3cret" });
  client.connect();
  assert.equal(new URL(FakeSocket.last.url).searchParams.get("token"), "s3cret");
  const delays = [];
  for (let i = 0; i < 8; i++) {
    FakeSocket.last.refuse();
    const { state, retryInMs } = client.status;
    assert.equal(state, "waiting");
    delays.push(retryInMs);
    tick(retryInMs);
  }
  // random() is 0.5: three quarters of min(cap, 100·2^n).
  assert.deepEqual(delays, [75, 150, 300, 600, 750, 750, 750, 750]);
  assert.equal(seen.error.length, 8);
  for (const err of seen.error) {
    assert.equal(err.code, "connect_failed");
    assert.match(err.message, /could not connect to ws:\/\/gateway\.test\/prod/);
    assert.doesNotMatch(err.message, /s3cret/, "the token must stay out of messages");
  }
  assert.equal(new URL(FakeSocket.last.url).searchParams.get("token"), "s3cret", "the token is kept on reconnect");

  FakeSocket.last.accept();
  FakeSocket.last.drop(1006);
  assert.equal(client.status.retryInMs, 75, "backoff restarts after a successful open");
});

test("pings keep the connection alive; a missing answer replaces it", (t) => {
  const { client, tick } = setup(t, { pingIntervalMs: 1000, pongTimeoutMs: 200 });
  client.subscribe("a");
  client.connect();
  const first = FakeSocket.last;
  first.accept();
  first.sent.length = 0;

  tick(1000);
  assert.deepEqual(first.sent, [{ action: "ping" }]);
  first.deliver({ type: "pong" });
  tick(200);
  assert.equal(client.status.state, "open", "answered ping must not reconnect");

  tick(800);
  assert.equal(first.sent.length, 2);
  tick(200); // no pong this time
  assert.equal(client.status.state, "waiting");
  assert.match(client.status.reason, /no answer to ping/);
  assert.equal(first.closedWith.code, 4000);
  tick(client.status.retryInMs);
  FakeSocket.last.accept();
  assert.notEqual(FakeSocket.last, first);
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["a"] }]);
});

test("invalid topics are refused before anything is stored or sent", (t) => {
  const { client, seen } = setup(t);
  client.connect();
  FakeSocket.last.accept();
  for (const bad of ["", "has space", "-lead", "x".repeat(129), ["ok", "bad/slash"], [42], 42, null]) {
    assert.throws(
      () => client.subscribe(bad),
      (err) => err instanceof GatewayError && err.code === "invalid_topic",
      JSON.stringify(bad),
    );
  }
  assert.deepEqual(client.subscriptions, []);
  assert.deepEqual(FakeSocket.last.sent, []);
  assert.deepEqual(seen.subscriptions, []);
});

test("close stops for good until connect", (t) => {
  const { client, tick } = setup(t);
  client.subscribe("a");
  client.connect();
  const first = FakeSocket.last;
  first.accept();
  client.close();
  assert.equal(client.status.state, "closed");
  assert.deepEqual(first.closedWith, { code: 1000, reason: "client closed" });
  first.drop(1000); // the browser's late close event
  tick(60_000);
  assert.equal(FakeSocket.all.length, 1, "reconnected after close()");
  assert.equal(client.status.state, "closed");

  client.connect();
  FakeSocket.last.accept();
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["a"] }], "subscriptions survive close()");
});

test("a malformed URL is reported, not thrown", (t) => {
  fakeTimers(t);
  const client = new GatewayClient("not a url", {
    WebSocket: class {
      constructor() {
        throw new SyntaxError("invalid URL");
      }
    },
  });
  const errors = [];
  client.on("error", (e) => errors.push(e));
  client.connect();
  assert.equal(client.status.state, "closed");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "bad_url");
});

test("a listener that throws disturbs neither the client nor other listeners", (t) => {
  const { client, seen, tick } = setup(t);
  client.on("message", () => {
    throw new Error("listener bug");
  });
  client.connect();
  FakeSocket.last.accept();
  FakeSocket.last.deliver({ type: "message", topic: "a", id: "m", data: 1, publishTime: "t" });
  FakeSocket.last.deliver({ type: "message", topic: "a", id: "n", data: 2, publishTime: "t" });
  assert.deepEqual(seen.message.map((m) => m.id), ["m", "n"]);
  // The exception is rethrown on its own task, where a browser reports it.
  assert.throws(() => tick(1), /listener bug/);
});

// Positions and recovery. The server numbers each topic's messages; the
// client turns at-least-once, possibly reordered delivery and reconnects
// into each message once, in offset order, or a resync event.

/** A message frame of topic at offset in epoch; its id names both. */
function msg(topic, offset, epoch = "E") {
  return { type: "message", topic, id: `${topic}/${epoch}/${offset}`, data: offset, publishTime: "t", offset, epoch };
}

/**
 * A client subscribed to topics and connected, its subscription confirmed
 * at the given positions (epoch E). events records message, resync and
 * recovered events in the order they came, as short strings.
 */
function streaming(t, positions, options = {}) {
  const { client, seen, tick } = setup(t, { gapTimeoutMs: 1000, ...options });
  const events = [];
  client.on("message", (m) => events.push(m.offset === undefined ? `message ${m.topic} ${m.id}` : `message ${m.topic} ${m.offset}`));
  client.on("resync", (r) => events.push(`resync ${r.topic} ${r.reason}`));
  client.on("recovered", (r) => events.push(`recovered ${r.topic} ${r.count} ${r.cause}`));
  client.subscribe(Object.keys(positions));
  client.connect();
  FakeSocket.last.accept();
  confirm(FakeSocket.last, positions);
  return { client, seen, tick, events };
}

/** The server's subscribed frame: topics at offsets of epoch E, and what it recovers. */
function confirm(socket, offsets, recovered) {
  const positions = Object.fromEntries(Object.entries(offsets).map(([topic, offset]) => [topic, { epoch: "E", offset }]));
  socket.deliver({ type: "subscribed", topics: Object.keys(offsets), positions, ...(recovered && { recovered }) });
}

/** Drops the connection and opens the next one; returns it, accepted. */
function reconnect(client, tick) {
  FakeSocket.last.drop(1001, "Going away");
  tick(client.status.retryInMs);
  FakeSocket.last.accept();
  return FakeSocket.last;
}

test("duplicates are dropped: each offset is delivered once", (t) => {
  const { events, tick } = streaming(t, { a: 45, b: 7 });
  for (const m of [msg("a", 46), msg("a", 46), msg("b", 8), msg("a", 47), msg("a", 45), msg("a", 46), msg("b", 8), msg("a", 47)]) {
    FakeSocket.last.deliver(m);
  }
  assert.deepEqual(events, ["message a 46", "message b 8", "message a 47"]);
  // Nor is a duplicate taken for a message after a gap.
  tick(10_000);
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["a", "b"] }]);
  assert.equal(events.length, 3);
});

test("a message after a gap waits, and the gap's messages come first as soon as they arrive", (t) => {
  const { events, tick } = streaming(t, { a: 45 });
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 48));
  socket.deliver(msg("a", 47));
  assert.deepEqual(events, [], "delivered across a gap");
  tick(500);
  socket.deliver(msg("a", 46));
  assert.deepEqual(events, ["message a 46", "message a 47", "message a 48"]);
  socket.deliver(msg("a", 49));
  tick(5000);
  assert.deepEqual(events.at(-1), "message a 49");
  assert.equal(socket.sent.length, 1, `a filled gap was asked for: ${JSON.stringify(socket.sent)}`);
});

test("messages that arrive before the subscribed frame wait for it, then come in order", (t) => {
  const { client, tick } = setup(t);
  const events = [];
  client.on("message", (m) => events.push(m.offset));
  client.subscribe(["a", "b"]);
  client.connect();
  FakeSocket.last.accept();
  FakeSocket.last.deliver(msg("a", 48));
  FakeSocket.last.deliver(msg("b", 3));
  FakeSocket.last.deliver(msg("a", 47));
  assert.deepEqual(events, []);
  tick(10);
  // Positions are read just after the subscription is stored: a message
  // that came through it may be at or below its topic's position.
  confirm(FakeSocket.last, { a: 49, b: 1 });
  assert.deepEqual(events, [47, 48], "b's 3 came before its 2");
  FakeSocket.last.deliver(msg("a", 49));
  FakeSocket.last.deliver(msg("b", 2));
  assert.deepEqual(events, [47, 48, 49, 2, 3]);
});

test("a gap that does not fill is asked for: a subscribe with recover for that topic only", (t) => {
  const { events, tick } = streaming(t, { a: 45, b: 3 });
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 46));
  socket.deliver(msg("a", 48));
  socket.deliver(msg("b", 4));
  tick(999);
  assert.equal(socket.sent.length, 1, "asked before gapTimeoutMs");
  tick(1);
  assert.deepEqual(socket.sent.slice(1), [{ action: "subscribe", topics: ["a"], recover: { a: { epoch: "E", offset: 46 } } }]);

  // The server stores the subscription at 49 and replays 47 and 48.
  socket.deliver(msg("a", 49));
  confirm(socket, { a: 49 }, { a: true });
  socket.deliver(msg("a", 47));
  socket.deliver(msg("a", 48));
  // Recovered: 47 and 49, which were not here when the client asked.
  assert.deepEqual(events, ["message a 46", "message b 4", "message a 47", "message a 48", "message a 49", "recovered a 2 gap"]);
  tick(10_000);
  assert.equal(socket.sent.length, 2, "asked again after the gap filled");
});

test("a gap that a recover did not fill either ends in a resync, and the stream goes on", (t) => {
  const { events, tick } = streaming(t, { a: 45 });
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 47));
  socket.deliver(msg("a", 48));
  tick(1000);
  assert.equal(socket.sent.at(-1).recover.a.offset, 45);
  tick(5000);
  assert.deepEqual(events, [], "gave up before the server answered");
  confirm(socket, { a: 48 }, { a: true }); // yet 46 never comes
  tick(1000);
  assert.deepEqual(events, ["resync a gap", "message a 47", "message a 48"]);
  socket.deliver(msg("a", 49));
  assert.deepEqual(events.at(-1), "message a 49");
});

test("every reconnect asks to recover each topic from its last position", (t) => {
  const { client, events, tick } = streaming(t, { a: 45, b: 0, c: 9 });
  FakeSocket.last.deliver(msg("a", 46));
  FakeSocket.last.deliver(msg("a", 48)); // held across the reconnect
  const second = reconnect(client, tick);
  assert.deepEqual(second.sent, [
    { action: "subscribe", topics: ["a", "b", "c"], recover: { a: { epoch: "E", offset: 46 }, b: { epoch: "E", offset: 0 }, c: { epoch: "E", offset: 9 } } },
  ]);

  // The replay can come before and after the answer, interleaved with new messages and duplicates.
  second.deliver(msg("a", 47));
  second.deliver(msg("b", 2));
  confirm(second, { a: 50, b: 2, c: 9 }, { a: true, b: true, c: true });
  second.deliver(msg("b", 1));
  second.deliver(msg("a", 51));
  second.deliver(msg("a", 50));
  second.deliver(msg("a", 49));
  second.deliver(msg("a", 48));
  assert.deepEqual(events, [
    "message a 46",
    "message a 47",
    "message a 48",
    "recovered c 0 reconnect",
    "message b 1",
    "message b 2",
    "recovered b 2 reconnect",
    "message a 49",
    "message a 50",
    "recovered a 3 reconnect", // 47, 49 and 50: 48 was held already
    "message a 51",
  ]);

  // API Gateway's 2-hour close is one more reconnect: it recovers from where the app is.
  const third = reconnect(client, tick);
  assert.deepEqual(third.sent[0].recover.a, { epoch: "E", offset: 51 });
});

test("a long replay is waited for as long as it keeps coming", (t) => {
  const { client, events, tick } = streaming(t, { a: 45 });
  const second = reconnect(client, tick);
  confirm(second, { a: 345 }, { a: true });
  second.deliver(msg("a", 346)); // live, ahead of the replay
  for (let offset = 46; offset <= 345; offset++) {
    second.deliver(msg("a", offset));
    tick(100); // 30 s in all, far beyond gapTimeoutMs, but never 1 s without progress
  }
  assert.deepEqual(
    events.filter((e) => !e.startsWith("message")),
    ["recovered a 300 reconnect"],
  );
  assert.deepEqual(events.filter((e) => e.startsWith("message")).map((e) => Number(e.split(" ")[2])), Array.from({ length: 301 }, (_, i) => 46 + i));
  assert.equal(second.sent.length, 1, "asked again while the replay came");
});

test("recovered: false is a resync, then the stream goes on from the new position", (t) => {
  const { client, events, tick } = streaming(t, { a: 45, b: 5 });
  FakeSocket.last.deliver(msg("a", 46));
  const second = reconnect(client, tick);
  second.deliver(msg("a", 102)); // live, after the subscription was stored at 100
  confirm(second, { a: 100, b: 5 }, { a: false, b: true });
  second.deliver(msg("a", 60)); // from before the resync: the app's reload covers it
  second.deliver(msg("a", 101));
  second.deliver(msg("a", 103));
  assert.deepEqual(events, ["message a 46", "resync a not_recovered", "message a 102", "recovered b 0 reconnect", "message a 103"]);
  tick(10_000);
  assert.equal(second.sent.length, 1, "the resynced stream asked for more");
});

test("a message of another epoch is a reset: resync, then the new epoch", (t) => {
  const { events, tick } = streaming(t, { a: 45 });
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 46));
  socket.deliver(msg("a", 1, "F"));
  socket.deliver(msg("a", 47)); // late, from before the reset
  socket.deliver(msg("a", 2, "F"));
  socket.deliver(msg("a", 1, "F"));
  assert.deepEqual(events, ["message a 46", "resync a new_epoch", "message a 1", "message a 2"]);
  tick(10_000);
  assert.equal(socket.sent.length, 1);
});

test("a subscribed frame of another epoch is a reset too", (t) => {
  const { client, events, tick } = streaming(t, { a: 45 });
  FakeSocket.last.deliver(msg("a", 46));
  client.subscribe("a"); // again, on the same connection: no recover asked
  assert.deepEqual(FakeSocket.last.sent.at(-1), { action: "subscribe", topics: ["a"] });
  FakeSocket.last.deliver({ type: "subscribed", topics: ["a"], positions: { a: { epoch: "F", offset: 0 } } });
  FakeSocket.last.deliver(msg("a", 1, "F"));
  assert.deepEqual(events, ["message a 46", "resync a new_epoch", "message a 1"]);
  tick(10_000);
});

test("messages without an offset pass straight through", (t) => {
  const { events, tick } = streaming(t, { a: 45 });
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 47)); // held: 46 is missing
  socket.deliver({ type: "message", topic: "a", id: "plain", data: 1, publishTime: "t" });
  socket.deliver({ type: "message", topic: "a", id: "plain", data: 1, publishTime: "t" });
  socket.deliver(msg("other", 3)); // a topic the client does not hold
  assert.deepEqual(events, ["message a plain", "message a plain", "message other 3"]);
  socket.deliver(msg("a", 46));
  assert.deepEqual(events.slice(3), ["message a 46", "message a 47"]);
  tick(10_000);
});

test("unsubscribe forgets the topic's position", (t) => {
  const { client, tick } = streaming(t, { a: 45, b: 1 });
  FakeSocket.last.deliver(msg("a", 47)); // a gap, whose deadline must not fire for a topic let go
  client.unsubscribe("a");
  tick(10_000);
  client.subscribe("a");
  const second = reconnect(client, tick);
  assert.deepEqual(second.sent, [{ action: "subscribe", topics: ["b", "a"], recover: { b: { epoch: "E", offset: 1 } } }]);
});

// Disconnect frames: a backend ends a connection on purpose and says
// whether the client may come back.

test("a disconnect without reconnect closes the client for good, with the reason", (t) => {
  const { client, seen, tick } = setup(t);
  const order = [];
  client.on("status", (s) => order.push(`status ${s.state}`));
  client.on("disconnect", (d) => order.push(`disconnect ${d.reason}`));
  client.subscribe("a");
  client.connect();
  const socket = FakeSocket.last;
  socket.accept();
  confirm(socket, { a: 45 });
  socket.deliver(msg("a", 46));
  order.length = 0;

  socket.deliver({ type: "disconnect", reason: "account suspended", reconnect: false });
  assert.deepEqual(seen.disconnect, [{ reason: "account suspended", reconnect: false }]);
  assert.deepEqual(client.status, { state: "closed", attempt: 0, reason: "disconnected by the server: account suspended" });
  assert.deepEqual(order, ["status closed", "disconnect account suspended"], "the status changes before the disconnect event");
  assert.deepEqual(client.subscriptions, [{ topic: "a", active: false }]);
  socket.deliver(msg("a", 47)); // raced the frame: the connection is over
  assert.equal(seen.message.length, 1);

  tick(29_999);
  assert.equal(socket.closedWith, null, "closed before the server could: its count of closed connections would miss it");
  socket.drop(1000, "Goodbye"); // the server's own close, after the frame
  tick(10 * 60_000);
  assert.equal(socket.closedWith, null, "closed a socket the server had closed");
  assert.equal(FakeSocket.all.length, 1, "reconnected after being told not to");
  assert.equal(client.status.state, "closed");
  assert.deepEqual(seen.error, []);

  // The app may still decide to come back (a new sign-in): from where it was.
  client.connect();
  FakeSocket.last.accept();
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["a"], recover: { a: { epoch: "E", offset: 46 } } }]);
});

test("a disconnect with reconnect comes back with the usual backoff and recovers", (t) => {
  const { client, seen, tick } = setup(t, { initialBackoffMs: 1000 });
  client.subscribe("a");
  client.connect();
  const first = FakeSocket.last;
  first.accept();
  confirm(first, { a: 45 });
  first.deliver(msg("a", 46));

  first.deliver({ type: "disconnect", reason: "rebalancing", reconnect: true });
  assert.deepEqual(seen.disconnect, [{ reason: "rebalancing", reconnect: true }]);
  // random() is 0.5: three quarters of the first ceiling, as after any drop.
  assert.deepEqual(client.status, { state: "waiting", attempt: 1, retryInMs: 750, reason: "disconnected by the server: rebalancing" });
  tick(749);
  assert.equal(FakeSocket.all.length, 1, "reconnected before the backoff delay");
  tick(1);
  assert.equal(FakeSocket.all.length, 2);
  FakeSocket.last.accept();
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["a"], recover: { a: { epoch: "E", offset: 46 } } }]);
  first.drop(1000); // the server's close, late: the retry was already made, not a second one
  tick(60_000);
  assert.equal(FakeSocket.all.length, 2, "the server's close of the old connection started another");
  assert.equal(client.status.state, "open");
});

test("a server that says it disconnects but never closes has its socket closed for it", (t) => {
  const { client, tick } = setup(t, { pongTimeoutMs: 5000 });
  client.connect();
  const socket = FakeSocket.last;
  socket.accept();
  socket.deliver({ type: "disconnect", reason: "bye", reconnect: false });
  tick(4999);
  assert.equal(socket.closedWith, null);
  tick(1);
  assert.deepEqual(socket.closedWith, { code: 1000, reason: "disconnected by the server" });
  assert.equal(client.status.state, "closed");
});

test("a disconnect listener can reconnect a client told to stay closed", (t) => {
  const { client } = setup(t);
  client.on("disconnect", () => client.connect());
  client.connect();
  FakeSocket.last.accept();
  FakeSocket.last.deliver({ type: "disconnect" });
  assert.equal(client.status.state, "connecting");
  assert.equal(FakeSocket.all.length, 2);
});

// Messages sent to a user rather than a topic.

test("a user's message is delivered at once with its user, outside every topic's order", (t) => {
  const { client, events, tick } = streaming(t, { a: 45, alice: 3 });
  const users = [];
  client.on("message", (m) => m.user !== undefined && users.push(m));
  const socket = FakeSocket.last;
  socket.deliver(msg("a", 47)); // held: 46 is missing
  const toAlice = { type: "message", user: "alice", id: "u1", data: { hi: 1 }, attributes: { k: "v" }, publishTime: "t" };
  socket.deliver(toAlice);
  socket.deliver(toAlice); // no offset, so nothing tells a repeat apart: the server's at-least-once shows
  assert.deepEqual(users, [toAlice, toAlice]);
  assert.equal(users[0].topic, undefined);
  assert.deepEqual(events, ["message undefined u1", "message undefined u1"], "a topic's message came out across its gap");

  // Neither the user message nor a topic named like the user was disturbed.
  socket.deliver(msg("a", 46));
  socket.deliver(msg("alice", 4));
  assert.deepEqual(events.slice(2), ["message a 46", "message a 47", "message alice 4"]);
  tick(10_000);
  assert.equal(socket.sent.length, 1, `a user message was taken for a gap: ${JSON.stringify(socket.sent)}`);
});

// Patterns and handlers. The server sends a message once per connection
// however many of its subscriptions match; the client hands it to every
// handler whose topic or pattern matches, each once.

test("matchTopic matches as the server does", () => {
  for (const [pattern, topic, want] of [
    ["*", "a", true],
    ["*", "a.b.c", true],
    ["a.*", "a.b", true],
    ["a.*", "a.b.c", true],
    ["a.*", "a", false],
    ["a.*", "ab.c", false],
    ["a.*", "b.a.c", false],
    ["a.b.*", "a.b.c", true],
    ["a.b.*", "a.bc", false],
    ["a.b", "a.b", true],
    ["a.b", "a.b.c", false],
    ["a", "a.b", false],
  ]) {
    assert.equal(matchTopic(pattern, topic), want, `${pattern} ~ ${topic}`);
  }
});

test("patterns are subscribed as given; invalid ones are refused", (t) => {
  const { client } = setup(t);
  client.connect();
  FakeSocket.last.accept();
  client.subscribe(["*", "orders.*", "a.b:c.*"]);
  assert.deepEqual(FakeSocket.last.sent, [{ action: "subscribe", topics: ["*", "orders.*", "a.b:c.*"] }]);
  for (const bad of ["**", "orders*", "orders.**", ".*", "*.orders", "-x.*", "a.*.b"]) {
    assert.throws(
      () => client.subscribe(bad),
      (err) => err instanceof GatewayError && err.code === "invalid_topic",
      bad,
    );
  }
  assert.equal(FakeSocket.last.sent.length, 1);
});

test("each handler gets the messages its topic or pattern matches, once each", (t) => {
  const { client } = setup(t);
  const got = [];
  const handler = (name) => (m) => got.push(`${name} ${m.topic} ${m.data}`);
  client.subscribe("chat.*", handler("chat.*"));
  client.subscribe("chat.r1", handler("chat.r1"));
  client.subscribe("*", handler("*"));
  const both = handler("both");
  client.subscribe(["chat.r1", "chat.*"], both); // one handler on two matching subscriptions
  client.connect();
  const socket = FakeSocket.last;
  socket.accept();
  socket.deliver({ type: "subscribed", topics: ["chat.*", "chat.r1", "*"] });
  for (const [topic, data] of [["chat.r1", 1], ["chat.r2.x", 2], ["chat", 3], ["other", 4]]) {
    socket.deliver({ type: "message", topic, id: `m${data}`, data, publishTime: "t" });
  }
  assert.deepEqual(got, [
    "chat.* chat.r1 1",
    "chat.r1 chat.r1 1",
    "* chat.r1 1",
    "both chat.r1 1",
    "chat.* chat.r2.x 2",
    "* chat.r2.x 2",
    "both chat.r2.x 2",
    "* chat 3",
    "* other 4",
  ]);
});

test("a handler follows its topic's order: duplicates dropped, gaps waited for", (t) => {
  const { client } = streaming(t, { a: 45 });
  const got = [];
  client.subscribe("a", (m) => got.push(m.offset));
  const socket = FakeSocket.last;
  for (const offset of [47, 46, 46, 48]) {
    socket.deliver(msg("a", offset));
  }
  assert.deepEqual(got, [46, 47, 48]);
});

test("a subscribe's undo drops its handler, and unsubscribes only what nothing else holds", (t) => {
  const { client } = setup(t);
  const got = [];
  const stopA = client.subscribe(["a", "b.*"], (m) => got.push(`A ${m.topic}`));
  const stopB = client.subscribe("a", (m) => got.push(`B ${m.topic}`));
  client.connect();
  const socket = FakeSocket.last;
  socket.accept();
  socket.deliver({ type: "subscribed", topics: ["a", "b.*"] });
  socket.sent.length = 0;

  stopA();
  stopA(); // once only: it must not release B's hold
  assert.deepEqual(socket.sent, [{ action: "unsubscribe", topics: ["b.*"] }], "a is still held by B");
  assert.deepEqual(client.subscriptions, [{ topic: "a", active: true }]);
  socket.deliver({ type: "message", topic: "a", id: "m1", data: 1, publishTime: "t" });
  assert.deepEqual(got, ["B a"]);

  stopB();
  assert.deepEqual(socket.sent.at(-1), { action: "unsubscribe", topics: ["a"] });
  assert.deepEqual(client.subscriptions, []);

  // unsubscribe() lets go of a topic whoever holds it, handlers and all.
  client.subscribe("c", (m) => got.push(`C ${m.topic}`));
  client.unsubscribe("c");
  socket.deliver({ type: "message", topic: "c", id: "m2", data: 2, publishTime: "t" });
  assert.deepEqual(got, ["B a"]);
});

// Publishing from the client: each publish is a frame with a ref of its
// own; the server's answer (published, or an error) echoes it.

/** A client connected and open, with no topics. */
function open(t, options) {
  const s = setup(t, options);
  s.client.connect();
  FakeSocket.last.accept();
  return { ...s, socket: FakeSocket.last };
}

test("publish sends a frame with a ref and resolves with the published answer of that ref", async (t) => {
  const { client, socket } = open(t);
  const first = client.publish("chat.r1", { text: "hi" }, { lang: "en" });
  const second = client.publish("chat.r1", [1, 2]);
  assert.equal(socket.sent.length, 2);
  const [f1, f2] = socket.sent;
  assert.deepEqual({ ...f1, ref: undefined }, { action: "publish", topic: "chat.r1", data: { text: "hi" }, attributes: { lang: "en" }, ref: undefined });
  assert.deepEqual({ ...f2, ref: undefined }, { action: "publish", topic: "chat.r1", data: [1, 2], ref: undefined });
  assert.ok(typeof f1.ref === "string" && f1.ref !== f2.ref && /^[\x21-\x7e]{1,64}$/.test(f1.ref), `refs ${f1.ref}, ${f2.ref}`);

  // Answered out of order: each promise takes the answer carrying its ref.
  socket.deliver({ type: "published", topic: "chat.r1", id: "id2", offset: 8, epoch: "E", ref: f2.ref });
  socket.deliver({ type: "published", topic: "chat.r1", id: "id1", offset: 7, epoch: "E", ref: f1.ref });
  assert.deepEqual(await first, { topic: "chat.r1", id: "id1", offset: 7, epoch: "E" });
  assert.deepEqual(await second, { topic: "chat.r1", id: "id2", offset: 8, epoch: "E" });
});

test("an error answering a publish rejects that publish only, with the server's code", async (t) => {
  const { client, socket, seen } = open(t);
  const codes = ["forbidden", "rate_limited", "invalid_topic", "bad_request"];
  const publishes = codes.map((_, i) => client.publish(`t${i}`, i));
  const kept = client.publish("kept", 0);
  // An error without a ref, or with another, answers something else: it is an error event.
  socket.deliver({ type: "error", code: "bad_request", message: "unrelated" });
  socket.deliver({ type: "error", code: "forbidden", message: "someone else's", ref: "not-ours" });
  codes.forEach((code, i) => socket.deliver({ type: "error", code, message: `no ${i}`, ref: socket.sent[i].ref }));
  for (const [i, p] of publishes.entries()) {
    await assert.rejects(p, (err) => err instanceof GatewayError && err.code === codes[i] && err.message === `no ${i}`);
  }
  assert.deepEqual(seen.error.map((e) => e.message), ["unrelated", "someone else's"]);
  socket.deliver({ type: "published", topic: "kept", id: "k", offset: 1, epoch: "E", ref: socket.sent.at(-1).ref });
  assert.equal((await kept).id, "k");
});

test("a dropped connection rejects every publish awaiting an answer; a late answer changes nothing", async (t) => {
  const { client, socket, tick } = open(t);
  const p1 = client.publish("a", 1);
  const p2 = client.publish("b", 2);
  const refs = socket.sent.map((f) => f.ref);
  socket.drop(1006);
  for (const p of [p1, p2]) {
    await assert.rejects(p, (err) => err instanceof GatewayError && err.code === "connection_lost" && /may or may not/.test(err.message));
  }
  tick(client.status.retryInMs);
  const next = FakeSocket.last;
  next.accept();
  const p3 = client.publish("c", 3);
  assert.ok(!refs.includes(next.sent.at(-1).ref), "a ref was reused");
  next.deliver({ type: "published", topic: "c", id: "c1", offset: 1, epoch: "E", ref: next.sent.at(-1).ref });
  assert.equal((await p3).id, "c1");
});

test("close and a server's disconnect reject pending publishes too", async (t) => {
  const { client, socket } = open(t);
  const closed = client.publish("a", 1);
  client.close();
  await assert.rejects(closed, { code: "connection_lost" });

  client.connect();
  FakeSocket.last.accept();
  const disconnected = client.publish("a", 2);
  FakeSocket.last.deliver({ type: "disconnect", reason: "bye", reconnect: true });
  await assert.rejects(disconnected, { code: "connection_lost" });
  assert.notEqual(FakeSocket.last, socket);
});

test("publish rejects without sending: not connected, a pattern or an invalid topic", async (t) => {
  const { client } = setup(t);
  await assert.rejects(client.publish("a", 1), { code: "not_connected" });
  client.connect();
  await assert.rejects(client.publish("a", 1), { code: "not_connected" }, "still connecting");
  FakeSocket.last.accept();
  for (const bad of ["a.*", "*", "has space", ""]) {
    await assert.rejects(client.publish(bad, 1), { code: "invalid_topic" }, bad);
  }
  await assert.rejects(client.publish("a", { n: 1n }), { code: "bad_request" }, "not JSON");
  assert.deepEqual(FakeSocket.last.sent, []);
});

test("a publish left unanswered rejects after publishTimeoutMs", async (t) => {
  const { client, socket, tick, seen } = open(t, { publishTimeoutMs: 2000 });
  let settled = false;
  const p = client.publish("a", 1);
  p.catch(() => {}).finally(() => (settled = true));
  tick(1999);
  await Promise.resolve();
  assert.equal(settled, false, "rejected before the timeout");
  tick(1);
  await assert.rejects(p, (err) => err.code === "timeout" && /may or may not/.test(err.message));
  // Its answer, now late, is neither an error nor a message.
  socket.deliver({ type: "published", topic: "a", id: "x", offset: 1, epoch: "E", ref: socket.sent[0].ref });
  assert.deepEqual(seen.error, []);
  assert.equal(client.status.state, "open");
});

test("parseFrame decodes published answers and error refs, and refuses malformed ones", () => {
  assert.deepEqual(parseFrame('{"type":"published","topic":"a","id":"i","offset":3,"epoch":"E","ref":"r"}'), {
    type: "published", topic: "a", id: "i", offset: 3, epoch: "E", ref: "r",
  });
  assert.deepEqual(parseFrame('{"type":"error","code":"forbidden","message":"m","ref":"r"}'), { type: "error", code: "forbidden", message: "m", ref: "r" });
  for (const raw of [
    '{"type":"published","topic":"a","id":"i","offset":3,"epoch":"E"}',
    '{"type":"published","topic":"a","id":"i","offset":"3","epoch":"E","ref":"r"}',
    '{"type":"published","topic":"a","id":"i","offset":0,"epoch":"E","ref":"r"}',
    '{"type":"published","id":"i","offset":3,"epoch":"E","ref":"r"}',
    '{"type":"error","code":"forbidden","message":"m","ref":7}',
  ]) {
    assert.ok(parseFrame(raw) instanceof GatewayError, raw);
  }
});
