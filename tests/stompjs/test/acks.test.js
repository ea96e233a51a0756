// Acknowledgement on queue-mode destinations: client-individual, client (cumulative),
// NACK redelivery, prefetch-count, redelivery on disconnect.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, eventually, fresh, TestClient, Versions } from '../lib/client.js';

// Every destination under /queue/jobs/ is a queue (competing consumers).
const ctx = useBroker({ destinations: [{ pattern: '/queue/jobs/*', mode: 'queue' }] });
const queue = () => fresh('/queue/jobs');

/**
 * Asserts what a fresh consumer of `q` finds there: subscribes, publishes a marker, and
 * returns the bodies that arrived up to and including the marker.
 */
async function leftOnQueue(t, q) {
  const c = await connected(t, ctx.broker);
  const inbox = await c.subscribe(q);
  await c.publish({ destination: q, body: 'marker' });
  await eventually(() => inbox.bodies.includes('marker'), `marker on ${q}`);
  return inbox.bodies;
}

test('queue messages go to exactly one of several consumers', async (t) => {
  const a = await connected(t, ctx.broker);
  const b = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const q = queue();
  const inboxA = await a.subscribe(q);
  const inboxB = await b.subscribe(q);
  const bodies = Array.from({ length: 20 }, (_, i) => `job-${i}`);
  for (const body of bodies) await pub.publish({ destination: q, body });
  await eventually(() => inboxA.items.length + inboxB.items.length >= 20, '20 deliveries');
  const got = [...inboxA.bodies, ...inboxB.bodies].sort(
    (x, y) => Number(x.slice(4)) - Number(y.slice(4)),
  );
  assert.deepEqual(got, bodies, 'each message delivered exactly once');
  assert.ok(inboxA.items.length > 0 && inboxB.items.length > 0, 'both consumers got work');
  for (const c of [a, b, pub]) c.assertQuiet();
});

test('client-individual: ack removes, nack redelivers with redelivered:true', async (t) => {
  const c = await connected(t, ctx.broker);
  const q = queue();
  const inbox = await c.subscribe(q, { ack: 'client-individual' });
  await c.publish({ destination: q, body: 'keep' });
  await c.publish({ destination: q, body: 'retry' });

  const [keep, retry] = await inbox.take(2);
  assert.equal(keep.body, 'keep');
  assert.equal(retry.body, 'retry');
  for (const m of [keep, retry]) {
    assert.ok(m.headers.ack, 'STOMP 1.2 MESSAGE on a client-individual subscription has ack');
    assert.notEqual(m.headers.redelivered, 'true', 'first delivery is not marked redelivered');
  }
  assert.notEqual(keep.headers.ack, retry.headers.ack);

  await c.withReceipt((receipt) => keep.ack({ receipt }));
  await c.withReceipt((receipt) => retry.nack({ receipt }));

  const again = await inbox.next();
  assert.equal(again.body, 'retry');
  assert.equal(again.headers.redelivered, 'true');
  assert.equal(again.headers.destination, q);
  await c.withReceipt((receipt) => again.ack({ receipt }));

  // Nothing unacked remains: after this consumer leaves, a new one finds only its marker.
  await c.close();
  assert.deepEqual(await leftOnQueue(t, q), ['marker']);
  c.assertQuiet();
});

test('a message nacked twice is redelivered twice', async (t) => {
  const c = await connected(t, ctx.broker);
  const q = queue();
  const inbox = await c.subscribe(q, { ack: 'client-individual' });
  await c.publish({ destination: q, body: 'flaky' });
  (await inbox.next()).nack();
  const second = await inbox.next();
  assert.equal(second.headers.redelivered, 'true');
  second.nack();
  const third = await inbox.next();
  assert.equal(third.body, 'flaky');
  assert.equal(third.headers.redelivered, 'true');
  await c.withReceipt((receipt) => third.ack({ receipt }));
  c.assertQuiet();
});

test('unacked messages go to another consumer when their consumer disconnects', async (t) => {
  const q = queue();
  const first = new TestClient(ctx.broker);
  await first.connect();
  const inbox = await first.subscribe(q, { ack: 'client-individual' });
  await first.publish({ destination: q, body: 'acked' });
  await first.publish({ destination: q, body: 'unacked' });
  const [acked] = await inbox.take(2);
  await first.withReceipt((receipt) => acked.ack({ receipt }));
  await first.close();

  const second = await connected(t, ctx.broker);
  const inbox2 = await second.subscribe(q, { ack: 'client-individual' });
  const m = await inbox2.next();
  assert.equal(m.body, 'unacked');
  assert.equal(m.headers.redelivered, 'true');
  m.ack();
  await second.publish({ destination: q, body: 'marker' });
  assert.equal((await inbox2.next()).body, 'marker');
  assert.deepEqual(inbox2.bodies, ['unacked', 'marker']);
  first.assertQuiet();
  second.assertQuiet();
});

test('client mode: ACK of a message acknowledges every earlier one too', async (t) => {
  const q = queue();
  const c = new TestClient(ctx.broker);
  await c.connect();
  const inbox = await c.subscribe(q, { ack: 'client' });
  for (const body of ['one', 'two', 'three', 'four']) await c.publish({ destination: q, body });
  const got = await inbox.take(4);
  assert.deepEqual(got.map((m) => m.body), ['one', 'two', 'three', 'four']);
  assert.ok(got.every((m) => m.headers.ack), 'MESSAGE has ack in client mode');
  // Cumulative: acking 'three' covers one, two, three; 'four' stays unacked.
  await c.withReceipt((receipt) => got[2].ack({ receipt }));
  await c.close();
  assert.deepEqual(await leftOnQueue(t, q), ['four', 'marker']);
  c.assertQuiet();
});

test('auto ack: delivered messages are gone, no ack header', async (t) => {
  const q = queue();
  const c = new TestClient(ctx.broker);
  await c.connect();
  const inbox = await c.subscribe(q);
  await c.publish({ destination: q, body: 'fire-and-forget' });
  const m = await inbox.next();
  assert.equal(m.headers.ack, undefined);
  await c.close();
  assert.deepEqual(await leftOnQueue(t, q), ['marker']);
  c.assertQuiet();
});

test('prefetch-count bounds unacked deliveries; ACK opens the window', async (t) => {
  const q = queue();
  const a = await connected(t, ctx.broker);
  const inboxA = await a.subscribe(q, { ack: 'client-individual', 'prefetch-count': '1' });
  for (const body of ['m1', 'm2', 'm3']) await a.publish({ destination: q, body });
  const m1 = await inboxA.next();
  assert.equal(m1.body, 'm1');

  // A is full, so a second consumer gets the two held messages; once it has them, A
  // cannot be about to receive them.
  const b = await connected(t, ctx.broker);
  const inboxB = await b.subscribe(q);
  assert.deepEqual((await inboxB.take(2)).map((m) => m.body), ['m2', 'm3']);
  assert.deepEqual(inboxA.bodies, ['m1']);
  await inboxB.unsubscribe(b);

  // While A is still full, m4 is held; acking m1 lets it through.
  await a.publish({ destination: q, body: 'm4' });
  await a.withReceipt((receipt) => m1.ack({ receipt }));
  const m4 = await inboxA.next();
  assert.equal(m4.body, 'm4');
  m4.ack();
  a.assertQuiet();
  b.assertQuiet();
});

test('STOMP 1.1: ack and nack by message-id', async (t) => {
  const c = await connected(t, ctx.broker, { stompVersions: new Versions(['1.1']) });
  assert.equal(c.client.connectedVersion, '1.1');
  const q = queue();
  const inbox = await c.subscribe(q, { ack: 'client-individual' });
  await c.publish({ destination: q, body: 'eleven' });
  const m = await inbox.next();
  assert.ok(m.headers['message-id']);
  await c.withReceipt((receipt) => m.nack({ receipt }));
  const again = await inbox.next();
  assert.equal(again.body, 'eleven');
  assert.equal(again.headers.redelivered, 'true');
  await c.withReceipt((receipt) => again.ack({ receipt }));
  await c.close();
  assert.deepEqual(await leftOnQueue(t, q), ['marker']);
  c.assertQuiet();
});
