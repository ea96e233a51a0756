// RECEIPT for every client frame that asks for one (stompjs watchForReceipt).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, eventually, fresh, TestClient, within } from '../lib/client.js';

const ROUNDS = 20;
const ctx = useBroker({ destinations: [{ pattern: '/queue/receipts', mode: 'queue' }] });

/** Waits for the RECEIPT of `receiptId`, registered before the frame is sent. */
// `onArrival` runs synchronously in stompjs's receipt callback: a promise's `.then` would run
// only after every frame of the same socket read was dispatched, which reorders the record.
function watch(c, receiptId, onArrival = () => {}) {
  return within(
    new Promise((resolve) => c.client.watchForReceipt(receiptId, (frame) => {
      onArrival(frame);
      resolve(frame);
    })),
    `RECEIPT ${receiptId}`,
  );
}

test('SUBSCRIBE, SEND, UNSUBSCRIBE each get a RECEIPT with the matching receipt-id', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/receipts');
  const got = [];

  let r = watch(c, 'sub-1');
  const sub = c.client.subscribe(dest, (m) => got.push(m.body), { receipt: 'sub-1' });
  assert.equal((await r).headers['receipt-id'], 'sub-1');

  r = watch(c, 'send-1');
  c.client.publish({ destination: dest, body: 'x', headers: { receipt: 'send-1' } });
  const receipt = await r;
  assert.equal(receipt.command, 'RECEIPT');
  assert.equal(receipt.headers['receipt-id'], 'send-1');
  await eventually(() => got.length === 1, 'the MESSAGE');

  r = watch(c, 'unsub-1');
  sub.unsubscribe({ receipt: 'unsub-1' });
  assert.equal((await r).headers['receipt-id'], 'unsub-1');
  assert.deepEqual(got, ['x']);
  c.assertQuiet();
});

test('RECEIPT for a SEND follows the MESSAGE it routed to the same connection', async (t) => {
  // A RECEIPT says the frame was processed; for a SEND that includes routing it, so a
  // subscriber on the publishing connection has the MESSAGE before the RECEIPT. Clients use
  // this as a fence ("after the receipt, my own subscription has it"). Repeated, and sent
  // both one at a time and in a burst, because a broker that queues RECEIPTs apart from
  // deliveries does not get the order wrong every time.
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/receipt-order');
  const order = [];
  await c.withReceipt((receipt) =>
    c.client.subscribe(dest, (m) => order.push(`MESSAGE ${m.body}`), { receipt }),
  );
  // One at a time, then a burst (several frames per read on the broker's side).
  const expected = [];
  const receipts = [];
  for (let i = 0; i < 2 * ROUNDS; i++) {
    const id = `order-${i}`;
    receipts.push(watch(c, id, () => order.push(`RECEIPT ${id}`)));
    c.client.publish({ destination: dest, body: `m${i}`, headers: { receipt: id } });
    expected.push(`MESSAGE m${i}`, `RECEIPT ${id}`);
    if (i < ROUNDS) await receipts[i];
  }
  await Promise.all(receipts);
  await eventually(() => order.length === expected.length, 'all MESSAGEs');
  const firstWrong = order.findIndex((x, i) => x !== expected[i]);
  assert.deepEqual(
    order,
    expected,
    `first out of order at #${firstWrong}: ${order.slice(Math.max(0, firstWrong - 1), firstWrong + 2).join(' | ')}`,
  );
  c.assertQuiet();
});

test('BEGIN, COMMIT, ABORT, ACK and NACK get RECEIPTs', async (t) => {
  const c = await connected(t, ctx.broker);
  const inbox = await c.subscribe('/queue/receipts', { ack: 'client-individual' });
  await c.publish({ destination: '/queue/receipts', body: 'job-1' });
  await c.publish({ destination: '/queue/receipts', body: 'job-2' });
  const [m1, m2] = await inbox.take(2);

  let r = watch(c, 'ack-1');
  m1.ack({ receipt: 'ack-1' });
  assert.equal((await r).headers['receipt-id'], 'ack-1');

  r = watch(c, 'nack-1');
  m2.nack({ receipt: 'nack-1' });
  assert.equal((await r).headers['receipt-id'], 'nack-1');
  const again = await inbox.next();
  assert.equal(again.body, 'job-2');
  again.ack();

  // stompjs' begin/commit/abort take no headers: write these frames to its socket by hand.
  for (const [command, tx] of [
    ['BEGIN', 'tx-a'],
    ['COMMIT', 'tx-a'],
    ['BEGIN', 'tx-b'],
    ['ABORT', 'tx-b'],
  ]) {
    const id = `${command}-${tx}`;
    r = watch(c, id);
    c.client.webSocket.send(`${command}\ntransaction:${tx}\nreceipt:${id}\n\n\0`);
    assert.equal((await r).headers['receipt-id'], id, `${command} receipt`);
  }
  c.assertQuiet();
});

test('receipt-ids with characters that need escaping come back unchanged', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/receipt-escape');
  for (const id of ['a:b', 'line\nbreak', 'back\\slash', 'ünï-🎉']) {
    const r = watch(c, id);
    c.client.publish({ destination: dest, body: 'x', headers: { receipt: id } });
    assert.equal((await r).headers['receipt-id'], id);
  }
  c.assertQuiet();
});

test('DISCONNECT with a receipt gets the RECEIPT before the socket closes', async () => {
  const c = new TestClient(ctx.broker, { disconnectHeaders: { receipt: 'bye-now' } });
  await c.connect();
  await c.close();
  const receipt = await c.disconnects.next();
  assert.equal(receipt.headers['receipt-id'], 'bye-now');
  await c.closes.next();
  c.assertQuiet();
});
