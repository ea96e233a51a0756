// CONNECT/CONNECTED: version negotiation, WebSocket subprotocols, CONNECTED headers, DISCONNECT.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, TestClient, Versions } from '../lib/client.js';

const ctx = useBroker();

test('default versions negotiate STOMP 1.2 over v12.stomp', async (t) => {
  const c = await connected(t, ctx.broker);
  const frame = c.connects.items[0];
  assert.equal(frame.command, 'CONNECTED');
  assert.equal(frame.headers.version, '1.2');
  assert.equal(c.client.connectedVersion, '1.2');
  assert.deepEqual(c.subprotocols, ['v12.stomp']);
  assert.match(frame.headers.server, /^stompbox\/\d+\.\d+\.\d+/);
  assert.ok(frame.headers.session, 'CONNECTED has a session header');
  // Client asks 10000,10000 (stompjs default); the broker answers its floor, [1000, 1000],
  // so STOMP's max() rule leaves the client its own 10 s.
  assert.equal(frame.headers['heart-beat'], '1000,1000');
  c.assertQuiet();
});

test('Versions([1.1]) negotiates STOMP 1.1 over v11.stomp', async (t) => {
  const c = await connected(t, ctx.broker, { stompVersions: new Versions(['1.1']) });
  const frame = c.connects.items[0];
  assert.equal(frame.headers.version, '1.1');
  assert.equal(c.client.connectedVersion, '1.1');
  assert.deepEqual(c.subprotocols, ['v11.stomp']);
  assert.ok(frame.headers['heart-beat'], '1.1 CONNECTED carries heart-beat');
  c.assertQuiet();
});

test('Versions([1.0]) negotiates STOMP 1.0 over v10.stomp', async (t) => {
  const c = await connected(t, ctx.broker, { stompVersions: new Versions(['1.0']) });
  assert.equal(c.client.connectedVersion, '1.0');
  assert.deepEqual(c.subprotocols, ['v10.stomp']);
  c.assertQuiet();
});

test('Versions([1.0, 1.1]) picks the highest common version, 1.1', async (t) => {
  const c = await connected(t, ctx.broker, { stompVersions: new Versions(['1.0', '1.1']) });
  assert.equal(c.connects.items[0].headers.version, '1.1');
  c.assertQuiet();
});

test('CONNECTED carries a heart-beat header consistent with the config', async (t) => {
  // Client 3000,4000 against the default floor [1000, 1000]: the server answers its floor,
  // and the max() rule gives the client the 3 s and 4 s it asked for.
  const c = await connected(t, ctx.broker, { heartbeatOutgoing: 3000, heartbeatIncoming: 4000 });
  assert.equal(c.connects.items[0].headers['heart-beat'], '1000,1000');
});

test('each connection gets its own session id', async (t) => {
  const a = await connected(t, ctx.broker);
  const b = await connected(t, ctx.broker);
  assert.notEqual(a.connects.items[0].headers.session, b.connects.items[0].headers.session);
});

test('deactivate sends DISCONNECT, gets its RECEIPT, and the socket closes', async () => {
  const c = new TestClient(ctx.broker);
  await c.connect();
  await c.close();
  const receipt = await c.disconnects.next();
  assert.equal(receipt.command, 'RECEIPT');
  assert.match(receipt.headers['receipt-id'], /^close-/);
  await c.closes.next();
  assert.equal(c.client.connected, false);
  c.assertQuiet();
});

test('a SEND to an unknown prefix gets ERROR "unknown destination" and the connection closes', async (t) => {
  const c = await connected(t, ctx.broker);
  c.client.publish({ destination: '/nowhere/x', body: 'hi', headers: { receipt: 'bad-1' } });
  const err = await c.errors.next();
  assert.equal(err.headers.message, 'unknown destination');
  assert.equal(err.headers['receipt-id'], 'bad-1');
  assert.match(err.body, /\/topic/);
  assert.match(err.body, /\/queue/);
  await c.closes.next();
  assert.equal(c.client.connected, false);
});
