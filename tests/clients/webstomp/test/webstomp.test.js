// webstomp-client (a third-party STOMP client, not written for Stompbox) over `ws`, against the
// stompbox binary with the default configuration: only the port, and queue mode on /queue/**
// for the ack/nack test. It connects as its README shows, with login/passcode and its default
// subprotocol offer (v10.stomp, v11.stomp, v12.stomp, in that order).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import webstomp from 'webstomp-client';
import WebSocket from 'ws';

import { useBroker } from '../../../stompjs/lib/broker.js';

// webstomp.client() opens `new WebSocket(url, protocols)` with the global WebSocket, as in a
// browser; Node 20 has none, so `ws` stands in.
globalThis.WebSocket = WebSocket;

const ctx = useBroker({ destinations: [{ pattern: '/queue/**', mode: 'queue' }] });

/** How long any single expected event may take. */
const WAIT_MS = 5_000;

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `cond` every 10 ms until it is truthy or `ms` passes. */
async function eventually(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (cond()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Values pushed by callbacks, taken in order with a deadline each. */
class Queue {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(v) {
    this.items.push(v);
    for (const wake of this.waiters.splice(0)) wake();
  }

  async next(ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    while (this.items.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${this.name}`);
      await within(new Promise((r) => this.waiters.push(r)), this.name, left);
    }
    return this.items.shift();
  }
}

let seq = 0;
const fresh = (prefix) => `${prefix}.${process.pid}.${++seq}`;

/**
 * A webstomp client connected with guest/guest. Records the raw WebSocket traffic (message
 * kinds, heart-beats both ways), receipts, errors and closes.
 */
async function connect(t, options = {}) {
  const client = webstomp.client(ctx.broker.url, { debug: false, ...options });
  const ws = client.ws;
  const raw = { in: [], outBeats: 0, outBinary: 0, closes: [], errors: [] };
  ws.on('message', (data, isBinary) => raw.in.push({ text: isBinary ? null : data.toString(), isBinary }));
  ws.on('close', (code) => raw.closes.push(code));
  const send = ws.send.bind(ws);
  ws.send = (data, ...rest) => {
    if (data === '\n' || (data instanceof Uint8Array && data.length === 1 && data[0] === 10)) {
      raw.outBeats++;
    }
    if (typeof data !== 'string') raw.outBinary++;
    return send(data, ...rest);
  };
  const receipts = new Queue('RECEIPT');
  client.onreceipt = (f) => receipts.push(f.headers['receipt-id']);
  const frame = await within(
    new Promise((resolve, reject) => {
      client.connect('guest', 'guest', resolve, (e) => {
        raw.errors.push(e);
        reject(new Error(`connect failed: ${e.command ?? e.code} ${JSON.stringify(e.headers ?? {})}`));
      });
    }),
    'CONNECTED',
  );
  t.after(() => {
    if (client.connected) client.disconnect();
    ws.terminate();
  });
  const inServerBeats = () => raw.in.filter((m) => m.text === '\n').length;
  return { client, ws, raw, frame, receipts, inServerBeats };
}

/** Subscribes and returns a queue of the MESSAGE frames it receives. */
function subscribe(c, destination, headers = {}) {
  const q = new Queue(`MESSAGE on ${destination}`);
  c.client.subscribe(destination, (m) => q.push(m), headers);
  return q;
}

/** SEND with a receipt, resolved when the receipt arrives. */
async function sendWithReceipt(c, destination, body, headers = {}) {
  const id = fresh('r');
  c.client.send(destination, body, { ...headers, receipt: id });
  assert.equal(await c.receipts.next(), id);
}

/** SUBSCRIBE with a receipt, so nothing is sent before the subscription exists. */
async function subscribed(c, destination, headers = {}) {
  const id = fresh('sub-r');
  const q = subscribe(c, destination, { ...headers, receipt: id });
  assert.equal(await c.receipts.next(), id);
  return q;
}

test('connects with login/passcode under defaults; the highest offered version, 1.2, is chosen', async (t) => {
  const c = await connect(t);
  assert.equal(c.ws.protocol, 'v12.stomp', 'subprotocol answered');
  assert.equal(c.frame.headers.version, '1.2');
  assert.equal(c.client.version, '1.2');
  assert.equal(c.frame.headers['user-name'], undefined, 'anonymous: the login is not an identity');
  assert.equal(c.raw.errors.length, 0);
});

test('text bodies: subscribe, send, receive, with receipts', async (t) => {
  const c = await connect(t);
  const dest = fresh('/topic/webstomp.text');
  const inbox = await subscribed(c, dest);
  await sendWithReceipt(c, dest, 'héllo wörld ✓', { 'x-app': 'one' });
  const m = await inbox.next();
  assert.equal(m.body, 'héllo wörld ✓');
  assert.equal(m.headers['x-app'], 'one');
  assert.equal(m.headers.destination, dest);
});

test('binary mode: frames travel as binary WebSocket messages both ways', async (t) => {
  const c = await connect(t, { binary: true });
  const dest = fresh('/topic/webstomp.bin');
  const inbox = await subscribed(c, dest);
  const inBefore = c.raw.in.length;
  const outBefore = c.raw.outBinary;
  // webstomp bodies are strings; binary mode sends them UTF-8 encoded in binary messages.
  await sendWithReceipt(c, dest, 'bytes \u0001\u0002 ✓', { 'content-type': 'application/octet-stream' });
  const m = await inbox.next();
  assert.equal(m.body, 'bytes \u0001\u0002 ✓');
  assert.equal(m.headers['content-type'], 'application/octet-stream');
  assert.ok(c.raw.outBinary - outBefore >= 1, 'the SEND went as a binary message');
  const after = c.raw.in.slice(inBefore);
  assert.ok(
    after.some((x) => x.isBinary),
    'an octet-stream MESSAGE arrives as a binary WebSocket message',
  );
});

test('client-individual ack and nack on a queue-mode destination', async (t) => {
  const c = await connect(t);
  const dest = fresh('/queue/webstomp.acks');
  const inbox = await subscribed(c, dest, { ack: 'client-individual' });
  await sendWithReceipt(c, dest, 'first');
  const m1 = await inbox.next();
  assert.equal(m1.body, 'first');
  assert.ok(m1.headers.ack, 'STOMP 1.2 MESSAGE carries an ack id');
  // NACK: redelivered, marked so.
  m1.nack({ receipt: 'nack-1' });
  assert.equal(await c.receipts.next(), 'nack-1');
  const again = await inbox.next();
  assert.equal(again.body, 'first');
  assert.equal(again.headers.redelivered, 'true');
  again.ack({ receipt: 'ack-1' });
  assert.equal(await c.receipts.next(), 'ack-1');
  // Acknowledged: the next message is the next one sent, not a redelivery.
  await sendWithReceipt(c, dest, 'second');
  const m2 = await inbox.next();
  assert.equal(m2.body, 'second');
  assert.equal(m2.headers.redelivered, undefined);
  m2.ack();
});

test('transactions: SENDs take effect at COMMIT, vanish at ABORT', async (t) => {
  const c = await connect(t);
  const dest = fresh('/topic/webstomp.tx');
  const inbox = await subscribed(c, dest);
  const tx = c.client.begin();
  c.client.send(dest, 'in-tx-1', { transaction: tx.id });
  c.client.send(dest, 'in-tx-2', { transaction: tx.id });
  // A message outside the transaction overtakes the transaction's.
  await sendWithReceipt(c, dest, 'outside');
  assert.equal((await inbox.next()).body, 'outside');
  tx.commit();
  assert.equal((await inbox.next()).body, 'in-tx-1');
  assert.equal((await inbox.next()).body, 'in-tx-2');

  const aborted = c.client.begin();
  c.client.send(dest, 'never', { transaction: aborted.id });
  aborted.abort();
  await sendWithReceipt(c, dest, 'after-abort');
  assert.equal((await inbox.next()).body, 'after-abort');
  assert.equal(inbox.items.length, 0, 'nothing from the aborted transaction');
});

test('heart-beats at 1 s both ways keep an idle connection up', async (t) => {
  const c = await connect(t, { heartbeat: { outgoing: 1000, incoming: 1000 } });
  // The broker answers its floor; by the max() rule both sides use the client's 1 s.
  assert.equal(c.frame.headers['heart-beat'], '1000,1000');
  const dest = fresh('/topic/webstomp.hb');
  const inbox = await subscribed(c, dest);
  const inBefore = c.inServerBeats();
  const outBefore = c.raw.outBeats;
  // Idle: only heart-beats flow. Three each way take about 3 s; a broker that waited 10 s
  // (or dropped the client) would miss the deadline.
  await eventually(
    () => c.inServerBeats() - inBefore >= 3 && c.raw.outBeats - outBefore >= 3,
    'three heart-beats each way',
    8_000,
  );
  assert.equal(c.raw.closes.length, 0, 'no close while idle');
  assert.equal(c.ws.readyState, WebSocket.OPEN);
  assert.equal(c.client.connected, true);
  await sendWithReceipt(c, dest, 'still alive');
  assert.equal((await inbox.next()).body, 'still alive');
});
