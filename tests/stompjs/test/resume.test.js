// History and resume with the repository's stomp.js helper (examples/chat/web/stompbox-resume.js):
// a client that loses its connection resubscribes in onConnect with resume-from and gets what
// was published meanwhile, in order and once; one that was away too long is told of the gap;
// a retained value reaches a new subscriber at once.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh, Inbox, TestClient, within } from '../lib/client.js';

const require = createRequire(import.meta.url);
const StompboxResume = require('../../../examples/chat/web/stompbox-resume.js');

const ctx = useBroker({
  destinations: [
    { pattern: '/topic/log/**', history: 50 },
    { pattern: '/topic/short/**', history: 2 },
    { pattern: '/topic/price/**', retain_last: true },
  ],
});

function resumingClient(t, dest, inbox, options = {}) {
  const resume = StompboxResume.create(options);
  const subscribed = [];
  const c = new TestClient(ctx.broker, {
    reconnectDelay: 100,
    onConnect: (_frame, tc) => {
      subscribed.push(
        tc.withReceipt((receipt) => resume.subscribe(tc.client, dest, (m) => inbox.push(m), { receipt })),
      );
    },
  });
  t.after(() => c.close());
  return { c, resume, subscribed };
}

test('after a dropped connection the helper resumes: nothing lost, nothing twice', async (t) => {
  const dest = fresh('/topic/log/a');
  const inbox = new Inbox(dest);
  const { c, resume, subscribed } = resumingClient(t, dest, inbox);
  await c.connect();
  await subscribed[0];
  const pub = await connected(t, ctx.broker);
  for (let i = 0; i < 3; i++) await pub.publish({ destination: dest, body: `m${i}` });
  for (let i = 0; i < 3; i++) assert.equal((await inbox.next()).body, `m${i}`);
  assert.equal(resume.position(dest), inbox.items[2].headers['message-id']);

  // The connection drops (the client keeps reconnecting); three messages meanwhile.
  c.client.forceDisconnect();
  await c.closes.next();
  for (let i = 3; i < 6; i++) await pub.publish({ destination: dest, body: `m${i}` });
  await c.connects.next(10_000);
  await within(subscribed[1], 'resubscription');
  for (let i = 3; i < 6; i++) assert.equal((await inbox.next()).body, `m${i}`);
  await pub.publish({ destination: dest, body: 'live' });
  assert.equal((await inbox.next()).body, 'live');
  assert.deepEqual(inbox.bodies, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'live']);
  c.assertQuiet();
});

test('away too long: onGap is called and the first message carries resume-gap', async (t) => {
  const dest = fresh('/topic/short/a');
  const inbox = new Inbox(dest);
  const gaps = [];
  const { c, subscribed } = resumingClient(t, dest, inbox, { onGap: (d) => gaps.push(d) });
  await c.connect();
  await subscribed[0];
  const pub = await connected(t, ctx.broker);
  await pub.publish({ destination: dest, body: 'seen' });
  assert.equal((await inbox.next()).body, 'seen');
  c.client.forceDisconnect();
  await c.closes.next();
  for (let i = 0; i < 5; i++) await pub.publish({ destination: dest, body: `missed${i}` });
  await c.connects.next(10_000);
  await within(subscribed[1], 'resubscription');
  const first = await inbox.next();
  assert.equal(first.headers['resume-gap'], 'true');
  assert.deepEqual(gaps, [dest]);
  assert.equal(first.body, 'missed3', 'the two kept come back');
  assert.equal((await inbox.next()).body, 'missed4');
});

test('a retained value reaches a new subscriber at once', async (t) => {
  const dest = fresh('/topic/price/eur');
  const pub = await connected(t, ctx.broker);
  await pub.publish({ destination: dest, body: '1.07' });
  await pub.publish({ destination: dest, body: '1.08' });
  const sub = await connected(t, ctx.broker);
  const inbox = await sub.subscribe(dest);
  const m = await inbox.next();
  assert.equal(m.body, '1.08');
  assert.equal(m.headers.retained, 'true');
});
