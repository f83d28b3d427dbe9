// Unit tests of the browser client's logic against a fake WebSocket and
// fake timers: node --test web/test/ (make web-check). The real browser
// against the real stack is internal/devstack/browser_test.go.

import { test } from "node:test";
import assert from "node:assert/strict";

import { GatewayClient, GatewayError, backoffDelay, parseFrame, MAX_TOPICS_PER_FRAME } from "../static/wsgateway.js";

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
  const seen = { status: [], message: [], error: [], subscriptions: [] };
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
  for (const bad of ["", "has space", "-lead", "x".repeat(129), ["ok", "bad/slash"], [42]]) {
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
