// Publish/subscribe on broadcast (/topic) destinations, and UNSUBSCRIBE.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh, Versions } from '../lib/client.js';

const ctx = useBroker();

test('a published message arrives with its body and headers', async (t) => {
  const sub = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/greetings');
  const inbox = await sub.subscribe(dest, { id: 'greeter' });

  await pub.publish({
    destination: dest,
    body: 'hello, world',
    headers: { 'content-type': 'text/plain;charset=utf-8', 'x-trace': 'abc-123' },
  });

  const m = await inbox.next();
  assert.equal(m.command, 'MESSAGE');
  assert.equal(m.body, 'hello, world');
  assert.equal(m.headers.destination, dest);
  assert.equal(m.headers.subscription, 'greeter');
  assert.equal(m.headers['content-type'], 'text/plain;charset=utf-8');
  assert.equal(m.headers['x-trace'], 'abc-123');
  assert.equal(m.headers['content-length'], String(Buffer.byteLength('hello, world')));
  assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');
  assert.equal(m.headers.ack, undefined, 'no ack header on an auto-ack subscription');
  sub.assertQuiet();
  pub.assertQuiet();
});

test('every subscriber of a topic gets every message, in publish order', async (t) => {
  const a = await connected(t, ctx.broker);
  const b = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/fanout');
  const inboxA = await a.subscribe(dest);
  const inboxB = await b.subscribe(dest);
  // Two subscriptions to the same destination on one connection: each gets its own copy.
  const inboxB2 = await b.subscribe(dest);

  const bodies = Array.from({ length: 50 }, (_, i) => `m${i}`);
  for (const body of bodies) pub.client.publish({ destination: dest, body });

  assert.deepEqual((await inboxA.take(50)).map((m) => m.body), bodies);
  assert.deepEqual((await inboxB.take(50)).map((m) => m.body), bodies);
  assert.deepEqual((await inboxB2.take(50)).map((m) => m.body), bodies);
  const ids = new Set(inboxA.items.map((m) => m.headers['message-id']));
  assert.equal(ids.size, 50, 'message-ids are distinct');
  for (const c of [a, b, pub]) c.assertQuiet();
});

test('a subscriber gets messages it publishes itself', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/self');
  const inbox = await c.subscribe(dest);
  await c.publish({ destination: dest, body: 'echo' });
  assert.equal((await inbox.next()).body, 'echo');
});

test('messages go only to subscribers of their destination', async (t) => {
  const c = await connected(t, ctx.broker);
  const one = fresh('/topic/one');
  const two = fresh('/topic/two');
  const inboxOne = await c.subscribe(one);
  const inboxTwo = await c.subscribe(two);
  c.client.publish({ destination: one, body: 'for one' });
  c.client.publish({ destination: two, body: 'for two' });
  assert.equal((await inboxOne.next()).body, 'for one');
  assert.equal((await inboxTwo.next()).body, 'for two');
  // Each message is checked against the other subscription's barrier below.
  await c.publish({ destination: one, body: 'barrier one' });
  await c.publish({ destination: two, body: 'barrier two' });
  assert.equal((await inboxOne.next()).body, 'barrier one');
  assert.equal((await inboxTwo.next()).body, 'barrier two');
  assert.deepEqual(inboxOne.bodies, ['for one', 'barrier one']);
  assert.deepEqual(inboxTwo.bodies, ['for two', 'barrier two']);
  c.assertQuiet();
});

test('after UNSUBSCRIBE no more messages arrive for that subscription', async (t) => {
  const c = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/unsub');
  const leaving = await c.subscribe(dest);
  const staying = await c.subscribe(dest);

  await pub.publish({ destination: dest, body: 'before' });
  assert.equal((await leaving.next()).body, 'before');
  assert.equal((await staying.next()).body, 'before');

  await leaving.unsubscribe(c);
  await pub.publish({ destination: dest, body: 'after' });
  // `staying` is on the same connection and destination: once it has 'after', any copy
  // for the unsubscribed id would already have arrived (stompjs would hand it to
  // onUnhandledMessage, which assertQuiet checks).
  assert.equal((await staying.next()).body, 'after');
  assert.deepEqual(leaving.bodies, ['before']);
  c.assertQuiet();
});

test('resubscribing with the same id after UNSUBSCRIBE works', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/resub');
  const first = await c.subscribe(dest, { id: 'again' });
  await first.unsubscribe(c);
  const second = await c.subscribe(dest, { id: 'again' });
  await c.publish({ destination: dest, body: 'once' });
  const m = await second.next();
  assert.equal(m.body, 'once');
  assert.equal(m.headers.subscription, 'again');
  assert.equal(first.items.length, 0);
  c.assertQuiet();
});

test('empty bodies arrive empty', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/empty');
  const inbox = await c.subscribe(dest);
  await c.publish({ destination: dest, body: '' });
  const m = await inbox.next();
  assert.equal(m.body, '');
  assert.equal(m.binaryBody.length, 0);
  c.assertQuiet();
});

test('STOMP 1.1 and 1.0 clients publish and receive too', async (t) => {
  for (const v of ['1.0', '1.1']) {
    const c = await connected(t, ctx.broker, { stompVersions: new Versions([v]) });
    assert.equal(c.client.connectedVersion, v);
    const dest = fresh('/topic/legacy');
    const inbox = await c.subscribe(dest);
    await c.publish({ destination: dest, body: `via ${v}`, headers: { 'x-v': v } });
    const m = await inbox.next();
    assert.equal(m.body, `via ${v}`);
    assert.equal(m.headers['x-v'], v);
    c.assertQuiet();
  }
});
