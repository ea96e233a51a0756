// RECEIPT for every client frame that asks for one (stompjs watchForReceipt).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh, TestClient, within } from '../lib/client.js';

const ctx = useBroker({ destinations: [{ pattern: '/queue/receipts', mode: 'queue' }] });

/** Waits for the RECEIPT of `receiptId`, registered before the frame is sent. */
function watch(c, receiptId) {
  return within(
    new Promise((resolve) => c.client.watchForReceipt(receiptId, resolve)),
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

  r = watch(c, 'unsub-1');
  sub.unsubscribe({ receipt: 'unsub-1' });
  assert.equal((await r).headers['receipt-id'], 'unsub-1');
  assert.deepEqual(got, ['x']);
  c.assertQuiet();
});

test('RECEIPT for a SEND comes after the message is routed to subscribers', async (t) => {
  // The subscriber is the publisher: the MESSAGE for a SEND precedes the SEND's RECEIPT on
  // the same connection.
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/receipt-order');
  const order = [];
  await c.withReceipt((receipt) =>
    c.client.subscribe(dest, (m) => order.push(`MESSAGE ${m.body}`), { receipt }),
  );
  const r = watch(c, 'after-send').then(() => order.push('RECEIPT'));
  c.client.publish({ destination: dest, body: 'one', headers: { receipt: 'after-send' } });
  await r;
  assert.deepEqual(order, ['MESSAGE one', 'RECEIPT']);
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

  // stompjs' begin/commit/abort take no headers: send them with receipts by hand.
  for (const [command, tx] of [
    ['BEGIN', 'tx-a'],
    ['COMMIT', 'tx-a'],
    ['BEGIN', 'tx-b'],
    ['ABORT', 'tx-b'],
  ]) {
    const id = `${command}-${tx}`;
    r = watch(c, id);
    c.client._stompHandler._transmit({ command, headers: { transaction: tx, receipt: id } });
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
