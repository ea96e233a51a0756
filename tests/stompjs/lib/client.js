// @stomp/stompjs clients for the tests, with promise helpers that all have deadlines.

import { Client, Versions } from '@stomp/stompjs';
import WebSocket from 'ws';

/** How long any single expected event may take before a test fails. */
export const WAIT_MS = 5_000;

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `cond` until it returns truthy or `ms` passes (bounded loop). */
export async function eventually(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A queue of values pushed by callbacks; `next()` waits (with a deadline) for the next one.
 */
export class Channel {
  constructor(name) {
    this.name = name;
    this.items = []; // everything ever pushed, in order
    this.read = 0; // how many next()/take() consumed
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Items pushed but not yet taken. */
  get pending() {
    return this.items.slice(this.read);
  }

  /** The next item not yet taken, waiting at most `ms` for it. */
  async next(ms = WAIT_MS) {
    const what = `${this.name} (item ${this.read + 1})`;
    const deadline = Date.now() + ms;
    while (this.read >= this.items.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await within(new Promise((resolve) => this.waiters.push(resolve)), what, left);
    }
    return this.items[this.read++];
  }

  async take(n, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }
}

let receiptCounter = 0;

/** A STOMP client for one test, with its events recorded. */
export class TestClient {
  /**
   * @param {import('./broker.js').Broker} broker
   * @param {object} conf overrides for the @stomp/stompjs Client configuration, plus
   *   `brokerURL` (another URL than broker.url, e.g. with a query string) and `wsOptions`
   *   (options for the `ws` WebSocket, e.g. `{ headers: { Authorization: ... } }` for the
   *   handshake)
   */
  constructor(broker, conf = {}) {
    this.broker = broker;
    this.connects = new Channel('CONNECTED');
    this.disconnects = new Channel('onDisconnect');
    this.closes = new Channel('WebSocket close');
    this.errors = new Channel('ERROR frame');
    this.wsErrors = [];
    this.unhandled = []; // MESSAGE/RECEIPT/other frames nobody was waiting for
    this.heartbeatsReceived = 0;
    this.heartbeatsLost = 0;
    this.rawIncoming = []; // { binary, bytes, command } per WebSocket message received
    this.rawOutgoing = []; // { binary, bytes } per WebSocket message sent
    this.subprotocols = [];
    const versions = conf.stompVersions ?? Versions.default;
    const { onConnect, brokerURL, wsOptions, ...rest } = conf;
    this.client = new Client({
      webSocketFactory: () => {
        const ws = new WebSocket(brokerURL ?? broker.url, versions.protocolVersions(), wsOptions);
        // Records each WebSocket message in both directions: text or binary, and its size.
        ws.on('message', (data, isBinary) => {
          const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
          const eol = buf.indexOf(10);
          const command = buf.toString('latin1', 0, eol < 0 ? buf.length : eol);
          this.rawIncoming.push({ binary: isBinary, bytes: buf.length, command });
        });
        const send = ws.send.bind(ws);
        ws.send = (data, ...args) => {
          const binary = typeof data !== 'string';
          const bytes = binary ? data.byteLength : Buffer.byteLength(data);
          this.rawOutgoing.push({ binary, bytes });
          return send(data, ...args);
        };
        ws.on('open', () => this.subprotocols.push(ws.protocol));
        return ws;
      },
      reconnectDelay: 0,
      connectionTimeout: WAIT_MS,
      debug: () => {},
      onConnect: (frame) => {
        this.connects.push(frame);
        if (onConnect) onConnect(frame, this);
      },
      onDisconnect: (frame) => this.disconnects.push(frame),
      onWebSocketClose: (evt) => this.closes.push({ code: evt.code, reason: evt.reason }),
      onWebSocketError: (evt) => this.wsErrors.push(evt.message ?? String(evt)),
      onStompError: (frame) => this.errors.push(frame),
      onUnhandledMessage: (m) => this.unhandled.push(m),
      onUnhandledReceipt: (f) => this.unhandled.push(f),
      onUnhandledFrame: (f) => this.unhandled.push(f),
      onHeartbeatReceived: () => this.heartbeatsReceived++,
      onHeartbeatLost: () => this.heartbeatsLost++,
      ...rest,
    });
  }

  /** Activates the client and waits for the next CONNECTED frame. */
  async connect() {
    this.client.activate();
    return this.connects.next();
  }

  /** Deactivates the client (DISCONNECT with receipt, then close) within the deadline. */
  async close() {
    await within(this.client.deactivate(), 'client deactivation');
  }

  /**
   * Calls `send(receiptId)`, which must send a frame with header receipt:receiptId, and waits
   * for its RECEIPT. Returns the RECEIPT frame.
   */
  async withReceipt(send, ms = WAIT_MS) {
    const id = `r-${process.pid}-${++receiptCounter}`;
    const got = new Promise((resolve) => this.client.watchForReceipt(id, resolve));
    send(id);
    return within(got, `RECEIPT ${id}`, ms);
  }

  /** SUBSCRIBE, waiting for its RECEIPT; returns an Inbox with the messages. */
  async subscribe(destination, headers = {}) {
    const inbox = new Inbox(destination);
    await this.withReceipt((receipt) => {
      inbox.subscription = this.client.subscribe(destination, (m) => inbox.push(m), {
        ...headers,
        receipt,
      });
    });
    return inbox;
  }

  /** SEND, waiting for its RECEIPT. */
  async publish(params) {
    await this.withReceipt((receipt) =>
      this.client.publish({ ...params, headers: { ...params.headers, receipt } }),
    );
  }

  /** Fails if the broker sent an ERROR frame or frames nobody handled. */
  assertQuiet() {
    const problems = [
      ...this.errors.items.map((f) => `ERROR ${JSON.stringify(f.headers)} ${f.body}`),
      ...this.unhandled.map((f) => `unhandled ${f.command} ${JSON.stringify(f.headers)}`),
    ];
    if (problems.length) throw new Error(`unexpected frames:\n${problems.join('\n')}`);
  }
}

/** Messages received by one subscription. */
export class Inbox extends Channel {
  constructor(destination) {
    super(`MESSAGE on ${destination}`);
    this.subscription = undefined;
  }

  get id() {
    return this.subscription.id;
  }

  get bodies() {
    return this.items.map((m) => m.body);
  }

  /** UNSUBSCRIBE, waiting for its RECEIPT. */
  async unsubscribe(client) {
    await client.withReceipt((receipt) => this.subscription.unsubscribe({ receipt }));
  }
}

/**
 * Connects a TestClient; closes it when `t` (the test context) ends.
 * @returns {Promise<TestClient>}
 */
export async function connected(t, broker, conf = {}) {
  const c = new TestClient(broker, conf);
  t.after(() => c.close());
  await c.connect();
  return c;
}

let uniq = 0;
/** A destination name no other test in this process uses. */
export function fresh(prefix) {
  return `${prefix}/t${process.pid}-${++uniq}`;
}

export { Client, Versions };
