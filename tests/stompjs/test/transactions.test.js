// Transactions: SEND, ACK and NACK inside BEGIN..COMMIT take effect at COMMIT; ABORT (or
// disconnecting) discards them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, eventually, fresh, TestClient } from '../lib/client.js';

const ctx = useBroker({ destinations: [{ pattern: '/queue/tx/*', mode: 'queue' }] });

test('SENDs in a transaction are delivered at COMMIT, in order', async (t) => {
  const sub = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/tx');
  const inbox = await sub.subscribe(dest);

  const tx = pub.client.begin();
  pub.client.publish({ destination: dest, body: 'tx-1', headers: { transaction: tx.id } });
  pub.client.publish({ destination: dest, body: 'tx-2', headers: { transaction: tx.id } });
  // Sent after the transactional SENDs on the same connection: once it is delivered,
  // they would have been too, had they not been held.
  await pub.publish({ destination: dest, body: 'outside' });
  assert.equal((await inbox.next()).body, 'outside');
  assert.deepEqual(inbox.bodies, ['outside'], 'nothing delivered before COMMIT');

  tx.commit();
  const [m1, m2] = await inbox.take(2);
  assert.equal(m1.body, 'tx-1');
  assert.equal(m2.body, 'tx-2');
  assert.equal(m1.headers.transaction, undefined, 'MESSAGE does not carry the transaction');
  sub.assertQuiet();
  pub.assertQuiet();
});

test('ABORT discards the SENDs of a transaction', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/tx');
  const inbox = await c.subscribe(dest);
  const tx = c.client.begin('my-tx');
  assert.equal(tx.id, 'my-tx');
  c.client.publish({ destination: dest, body: 'discard me', headers: { transaction: 'my-tx' } });
  tx.abort();
  await c.publish({ destination: dest, body: 'after' });
  assert.equal((await inbox.next()).body, 'after');
  assert.deepEqual(inbox.bodies, ['after']);
  c.assertQuiet();
});

test('two transactions on one connection are independent', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/tx');
  const inbox = await c.subscribe(dest);
  const keep = c.client.begin();
  const drop = c.client.begin();
  c.client.publish({ destination: dest, body: 'kept', headers: { transaction: keep.id } });
  c.client.publish({ destination: dest, body: 'dropped', headers: { transaction: drop.id } });
  drop.abort();
  keep.commit();
  await c.publish({ destination: dest, body: 'after' });
  await eventually(() => inbox.bodies.includes('after'), 'message after the transactions');
  assert.deepEqual(inbox.bodies, ['kept', 'after']);
  c.assertQuiet();
});

test('a transaction left open at DISCONNECT delivers nothing', async (t) => {
  const sub = await connected(t, ctx.broker);
  const dest = fresh('/topic/tx');
  const inbox = await sub.subscribe(dest);
  const pub = new TestClient(ctx.broker);
  await pub.connect();
  const tx = pub.client.begin();
  pub.client.publish({ destination: dest, body: 'abandoned', headers: { transaction: tx.id } });
  await pub.close();
  await sub.publish({ destination: dest, body: 'after' });
  assert.equal((await inbox.next()).body, 'after');
  assert.deepEqual(inbox.bodies, ['after']);
  pub.assertQuiet();
});

test('an ACK in a transaction applies at COMMIT', async (t) => {
  const c = await connected(t, ctx.broker);
  const q = fresh('/queue/tx');
  // prefetch-count 1: the next message can only arrive once the first is acknowledged.
  const inbox = await c.subscribe(q, { ack: 'client-individual', 'prefetch-count': '1' });
  await c.publish({ destination: q, body: '1' });
  await c.publish({ destination: q, body: '2' });
  const m1 = await inbox.next();
  assert.equal(m1.body, '1');

  const tx = c.client.begin();
  m1.ack({ transaction: tx.id });
  // A fence: once this RECEIPT is in, an ACK applied immediately would have released '2'
  // ahead of it.
  await c.withReceipt((receipt) => c.client.publish({ destination: fresh('/topic/fence'), headers: { receipt } }));
  assert.deepEqual(inbox.bodies, ['1'], 'ACK held until COMMIT');

  tx.commit();
  const m2 = await inbox.next();
  assert.equal(m2.body, '2');
  m2.ack();
  c.assertQuiet();
});

test('an aborted ACK leaves the message unacknowledged', async (t) => {
  const q = fresh('/queue/tx');
  const first = new TestClient(ctx.broker);
  await first.connect();
  const inbox = await first.subscribe(q, { ack: 'client-individual' });
  await first.publish({ destination: q, body: 'still mine' });
  const m = await inbox.next();
  const tx = first.client.begin();
  m.ack({ transaction: tx.id });
  tx.abort();
  await first.close();

  // The ACK never happened, so the message goes to the next consumer.
  const second = await connected(t, ctx.broker);
  const inbox2 = await second.subscribe(q);
  const again = await inbox2.next();
  assert.equal(again.body, 'still mine');
  assert.equal(again.headers.redelivered, 'true');
  first.assertQuiet();
  second.assertQuiet();
});

test('a NACK in a transaction redelivers at COMMIT', async (t) => {
  const c = await connected(t, ctx.broker);
  const q = fresh('/queue/tx');
  const inbox = await c.subscribe(q, { ack: 'client-individual' });
  await c.publish({ destination: q, body: 'again' });
  const m = await inbox.next();
  const tx = c.client.begin();
  m.nack({ transaction: tx.id });
  await c.withReceipt((receipt) => c.client.publish({ destination: fresh('/topic/fence'), headers: { receipt } }));
  assert.equal(inbox.items.length, 1, 'NACK held until COMMIT');
  tx.commit();
  const redelivered = await inbox.next();
  assert.equal(redelivered.body, 'again');
  assert.equal(redelivered.headers.redelivered, 'true');
  redelivered.ack();
  c.assertQuiet();
});
