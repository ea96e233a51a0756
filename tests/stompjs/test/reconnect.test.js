// Broker restart: SIGTERM closes sessions with 1001 and exits 0; stompjs reconnects
// (reconnectDelay), resubscribes in onConnect, and messages flow again.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh, Inbox, TestClient, within } from '../lib/client.js';

const ctx = useBroker();

test('stompjs reconnects after a broker restart and resubscribes in onConnect', async (t) => {
  const dest = fresh('/topic/restart');
  const inbox = new Inbox(dest);
  const subscribed = []; // one promise per onConnect: the SUBSCRIBE's RECEIPT
  const c = new TestClient(ctx.broker, {
    reconnectDelay: 100,
    onConnect: (_frame, tc) => {
      subscribed.push(
        tc.withReceipt((receipt) => tc.client.subscribe(dest, (m) => inbox.push(m), { receipt })),
      );
    },
  });
  t.after(() => c.close());

  await c.connect();
  await subscribed[0];
  await c.publish({ destination: dest, body: 'before restart' });
  assert.equal((await inbox.next()).body, 'before restart');

  const exit = await ctx.broker.stop();
  assert.deepEqual(exit, { code: 0, signal: null, killed: false }, 'SIGTERM: clean exit 0');
  const close = await c.closes.next();
  assert.equal(close.code, 1001, 'sessions closed with WebSocket 1001 (going away)');
  assert.equal(c.client.connected, false);

  await ctx.broker.start(); // same port
  const second = await c.connects.next(10_000);
  assert.equal(c.connects.items.length, 2, 'onConnect called twice');
  assert.ok(second.headers.session, 'second CONNECTED has a session');
  await within(subscribed[1], 'resubscription');

  // Published by another client, after the restart: arrives through the resubscription.
  const pub = await connected(t, ctx.broker);
  await pub.publish({ destination: dest, body: 'after restart' });
  const m = await inbox.next();
  assert.equal(m.body, 'after restart');
  assert.equal(m.headers.subscription, inbox.items[0].headers.subscription);
  assert.deepEqual(inbox.bodies, ['before restart', 'after restart']);
  c.assertQuiet();
  pub.assertQuiet();
});
