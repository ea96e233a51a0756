// Frame size limits: a frame over stomp.max_frame_size gets ERROR "body too large", whether
// it arrives as one WebSocket message or split into many (splitLargeFrames).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh } from '../lib/client.js';

const LIMIT = 65536;
const ctx = useBroker({ config: { stomp: { max_frame_size: LIMIT } } });

test('a body just under the limit is delivered', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/limit');
  const inbox = await c.subscribe(dest);
  const body = 'y'.repeat(LIMIT - 1024);
  await c.publish({ destination: dest, body });
  assert.ok((await inbox.next()).body === body);
  c.assertQuiet();
});

test('an oversized frame in one WebSocket message gets ERROR "body too large"', async (t) => {
  const c = await connected(t, ctx.broker);
  c.client.publish({ destination: fresh('/topic/limit'), body: 'x'.repeat(LIMIT + 1) });
  const err = await c.errors.next();
  assert.equal(err.headers.message, 'body too large');
  await c.closes.next();
  assert.equal(c.client.connected, false);
});

test('an oversized frame split into 8 KiB messages gets ERROR "body too large"', async (t) => {
  // The broker sees content-length in the first piece and gives up on the frame while the
  // client is still sending the rest; the ERROR must still reach the client.
  const c = await connected(t, ctx.broker, {
    splitLargeFrames: true,
    maxWebSocketChunkSize: 8 * 1024,
  });
  c.client.publish({ destination: fresh('/topic/limit'), body: 'x'.repeat(1024 * 1024) });
  const closed = await c.closes.next();
  assert.equal(c.client.connected, false);
  assert.equal(
    c.errors.items.length,
    1,
    `expected an ERROR frame before the close; got none (WebSocket close code ${closed.code})`,
  );
  assert.equal(c.errors.items[0].headers.message, 'body too large');
});
