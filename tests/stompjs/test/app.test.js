// Application destinations (/app) configured by [[app.routes]]: send_to republishing, HTTP
// backends (forward) for SEND and SUBSCRIBE, backend timeouts and failures reported on the
// sender's /user/queue/errors, and SENDs to an /app destination without a route.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { startBackend } from '../lib/backend.js';
import { hashPassword, tomlValue, useBroker } from '../lib/broker.js';
import { connected, eventually, fresh } from '../lib/client.js';

const TIMEOUT_MS = 500; // [app] backend_timeout_ms
const SLOW_MS = 3_000; // how long the slow backend takes: far beyond the timeout
const CAROL = { login: 'carol', passcode: 'carol-pw' };

let backend;

/** The backend's answers, by path. */
const hooks = {
  // Answers every order with a broadcast and a reply to the sender.
  '/hook': (req) => {
    const id = req.json.captures.id;
    return {
      json: {
        messages: [
          { destination: `/topic/orders/${id}`, body: `order ${id} accepted` },
          {
            to_sender: true,
            destination: '/queue/replies',
            body: `your order ${id}`,
            headers: { 'x-order': id },
          },
        ],
      },
    };
  },
  '/slow': () => ({ status: 204, delayMs: SLOW_MS }),
  '/fail': () => ({ status: 500, text: 'internal detail: the database password is hunter2' }),
  '/snapshot': () => ({ json: { messages: [{ reply: true, body: 'snapshot' }] } }),
};

after(() => backend?.close());

// Runs in useBroker's `before` hook: the backend must listen (for its port) and carol's hash
// exist before the broker's config is written.
const ctx = useBroker(async () => {
  const carolHash = await hashPassword(CAROL.passcode);
  backend = await startBackend(hooks);
  return {
    config: { app: { backend_timeout_ms: TIMEOUT_MS } },
    toml: `
[[app.routes]]
destination = "/app/echo/{room}"
send_to = "/topic/echo/{room}"

[[app.routes]]
destination = "/app/orders/{id}"
forward = ${tomlValue(backend.url('/hook'))}

[[app.routes]]
destination = "/app/slow"
forward = ${tomlValue(backend.url('/slow'))}

[[app.routes]]
destination = "/app/fail"
forward = ${tomlValue(backend.url('/fail'))}

[[app.routes]]
destination = "/app/snapshot"
on = "subscribe"
forward = ${tomlValue(backend.url('/snapshot'))}

[[auth.users]]
name = "carol"
password_hash = ${tomlValue(carolHash)}
`,
  };
});

/**
 * Makes `inbox` also append `label(message)` to `events` as each message arrives (in the
 * stompjs callback, so two inboxes' messages are recorded in arrival order).
 */
function recording(inbox, events, label) {
  const push = inbox.push.bind(inbox);
  inbox.push = (m) => {
    events.push(label(m));
    push(m);
  };
  return inbox;
}

let rooms = 0;
/** A room name (one path segment) no other test uses. */
const room = (name) => `${name}-${process.pid}-${++rooms}`;

test('send_to: a SEND to /app/echo/{room} reaches /topic/echo/{room} with body and headers', async (t) => {
  const sub = await connected(t, ctx.broker);
  const pub = await connected(t, ctx.broker);
  const topic = await sub.subscribe('/topic/echo/lobby', { id: 'echo-topic' });
  // Subscribing to the /app destination itself is not a way to see its SENDs.
  const direct = await sub.subscribe('/app/echo/lobby', { id: 'echo-app' });

  await pub.publish({
    destination: '/app/echo/lobby',
    body: 'hello, lobby',
    headers: { 'content-type': 'text/plain;charset=utf-8', 'x-trace': 'abc-123', 'x-empty': '' },
  });

  const m = await topic.next();
  assert.equal(m.body, 'hello, lobby');
  assert.equal(m.headers.destination, '/topic/echo/lobby');
  assert.equal(m.headers.subscription, 'echo-topic');
  assert.equal(m.headers['content-type'], 'text/plain;charset=utf-8');
  assert.equal(m.headers['x-trace'], 'abc-123');
  assert.equal(m.headers['x-empty'], '');
  assert.equal(m.headers.receipt, undefined, "the SEND's receipt header is not passed on");
  assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');

  // A barrier on `sub`'s own connection: anything for `direct` would have come before it.
  const barrier = fresh('/topic/barrier');
  const barrierInbox = await sub.subscribe(barrier);
  await sub.publish({ destination: barrier, body: 'fence' });
  assert.equal((await barrierInbox.next()).body, 'fence');
  assert.equal(direct.items.length, 0, 'nothing is delivered to subscribers of /app/echo/lobby');
  assert.deepEqual(topic.bodies, ['hello, lobby']);
  sub.assertQuiet();
  pub.assertQuiet();
});

test('send_to fills each capture: different rooms go to different topics', async (t) => {
  const c = await connected(t, ctx.broker);
  const a = room('a');
  const b = room('b');
  const inboxA = await c.subscribe(`/topic/echo/${a}`);
  const inboxB = await c.subscribe(`/topic/echo/${b}`);
  c.client.publish({ destination: `/app/echo/${a}`, body: 'to a' });
  c.client.publish({ destination: `/app/echo/${b}`, body: 'to b' });
  c.client.publish({ destination: `/app/echo/${a}`, body: 'to a again' });
  assert.deepEqual((await inboxA.take(2)).map((m) => m.body), ['to a', 'to a again']);
  assert.equal((await inboxB.next()).body, 'to b');
  c.assertQuiet();
});

test('forward: the backend gets the SEND as JSON and its messages are delivered', async (t) => {
  const sender = await connected(t, ctx.broker);
  const other = await connected(t, ctx.broker);
  const session = sender.connects.items[0].headers.session;

  const senderReplies = await sender.subscribe('/user/queue/replies');
  const otherReplies = await other.subscribe('/user/queue/replies');
  const orders = await other.subscribe('/topic/orders/42');

  const body = JSON.stringify({ item: 'widget', qty: 3 });
  await sender.publish({
    destination: '/app/orders/42',
    body,
    headers: { 'content-type': 'application/json', 'x-order-source': 'stompjs' },
  });

  const [req] = await eventually(
    () => {
      const got = backend.received('/hook', (j) => j.session === session);
      return got.length ? got : undefined;
    },
    'the POST to /hook',
  );
  assert.equal(req.method, 'POST');
  assert.match(req.headers['content-type'], /^application\/json/);
  const j = req.json;
  assert.ok(j, `the POST body is JSON: ${req.text}`);
  assert.equal(j.kind, 'send');
  assert.equal(j.destination, '/app/orders/42');
  assert.equal(j.path, '/orders/42');
  assert.deepEqual(j.captures, { id: '42' });
  assert.equal(j.headers.destination, '/app/orders/42');
  assert.equal(j.headers['content-type'], 'application/json');
  assert.equal(j.headers['x-order-source'], 'stompjs');
  assert.equal(j.body, body);
  assert.equal(j.body_base64 ?? null, null);
  assert.equal(j.session, session, 'session is the CONNECTED session header');
  assert.equal(j.user, null, 'an anonymous sender has no user');

  const broadcast = await orders.next();
  assert.equal(broadcast.body, 'order 42 accepted');
  assert.equal(broadcast.headers.destination, '/topic/orders/42');

  const reply = await senderReplies.next();
  assert.equal(reply.body, 'your order 42');
  assert.equal(reply.headers.destination, '/user/queue/replies');
  assert.equal(reply.headers['x-order'], '42');

  // The reply went to the sender's session only. `other`'s copy, had there been one, was
  // queued with the sender's: a SEND with a receipt from `other` now flushes it first.
  await other.publish({ destination: fresh('/topic/fence'), body: 'fence' });
  assert.equal(otherReplies.items.length, 0, "another session's /user/queue/replies gets nothing");
  assert.equal(backend.received('/hook', (x) => x.session === session).length, 1, 'one POST');
  assert.deepEqual(senderReplies.bodies, ['your order 42']);
  sender.assertQuiet();
  other.assertQuiet();
});

test('forward: the backend sees the authenticated user of the sender', async (t) => {
  const c = await connected(t, ctx.broker, { connectHeaders: CAROL });
  assert.equal(c.connects.items[0].headers['user-name'], 'carol');
  const session = c.connects.items[0].headers.session;
  const replies = await c.subscribe('/user/queue/replies');
  await c.publish({ destination: '/app/orders/7', body: 'one more' });
  const reply = await replies.next();
  assert.equal(reply.body, 'your order 7');
  const [req] = backend.received('/hook', (j) => j.session === session);
  assert.equal(req.json.user, 'carol');
  assert.deepEqual(req.json.captures, { id: '7' });
  assert.equal(req.json.body, 'one more');
  c.assertQuiet();
});

test('a backend slower than backend_timeout_ms: error on /user/queue/errors, connection unaffected', async (t) => {
  const c = await connected(t, ctx.broker);
  const session = c.connects.items[0].headers.session;
  const events = []; // arrival order of both subscriptions' MESSAGEs
  const errors = recording(await c.subscribe('/user/queue/errors'), events, () => 'error');
  const ping = fresh('/topic/ping');
  const pings = recording(await c.subscribe(ping), events, (m) => `ping ${m.body}`);

  const sentAt = Date.now();
  await c.publish({ destination: '/app/slow', body: 'take your time' });
  const [req] = await eventually(
    () => {
      const got = backend.received('/slow', (j) => j.session === session);
      return got.length ? got : undefined;
    },
    'the POST to /slow',
  );
  // The backend call is pending now; the connection still publishes and receives.
  await c.publish({ destination: ping, body: 'during' });
  assert.equal((await pings.next()).body, 'during');
  assert.equal(req.answeredAt, undefined, 'the backend has not answered yet');

  const err = await errors.next();
  const waited = Date.now() - sentAt;
  assert.match(err.headers.message, /\b500 ms\b/, `timeout message: ${err.headers.message}`);
  assert.equal(err.headers.destination, '/user/queue/errors');
  assert.ok(waited >= TIMEOUT_MS - 50, `error after ${waited} ms, before the timeout`);
  assert.ok(waited < SLOW_MS, `error after ${waited} ms: the broker waited for the backend`);
  assert.deepEqual(events, ['ping during', 'error'], 'the ping round-tripped before the timeout');

  await c.publish({ destination: ping, body: 'after' });
  assert.equal((await pings.next()).body, 'after');
  assert.equal(c.client.connected, true);
  c.assertQuiet();
});

test('a backend answering 500: "the backend answered 500" on /user/queue/errors', async (t) => {
  const c = await connected(t, ctx.broker);
  const errors = await c.subscribe('/user/queue/errors');
  await c.publish({ destination: '/app/fail', body: 'boom' });
  const err = await errors.next();
  assert.equal(err.headers.message, 'the backend answered 500');
  assert.equal(err.headers.destination, '/user/queue/errors');
  assert.doesNotMatch(err.body, /hunter2|internal detail/, "the backend's own text is not shown");

  // Still connected and working, and later application messages are still handled.
  const ping = fresh('/topic/ping');
  const pings = await c.subscribe(ping);
  await c.publish({ destination: ping, body: 'still here' });
  assert.equal((await pings.next()).body, 'still here');
  const r = room('after-fail');
  const echo = await c.subscribe(`/topic/echo/${r}`);
  await c.publish({ destination: `/app/echo/${r}`, body: 'echo after failure' });
  assert.equal((await echo.next()).body, 'echo after failure');
  assert.equal(errors.items.length, 1);
  assert.equal(c.client.connected, true);
  c.assertQuiet();
});

test('on = "subscribe": SUBSCRIBE /app/snapshot gets exactly one MESSAGE from the backend', async (t) => {
  const c = await connected(t, ctx.broker);
  const session = c.connects.items[0].headers.session;
  const snap = await c.subscribe('/app/snapshot', { id: 'snap-1' });
  const m = await snap.next();
  assert.equal(m.body, 'snapshot');
  assert.equal(m.headers.destination, '/app/snapshot');
  assert.equal(m.headers.subscription, 'snap-1');
  assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');

  // The connection's application messages are handled in order: once this echo is back, a
  // second snapshot (from the earlier SUBSCRIBE) would have arrived.
  const r = room('after-snapshot');
  const echo = await c.subscribe(`/topic/echo/${r}`);
  await c.publish({ destination: `/app/echo/${r}`, body: 'fence' });
  assert.equal((await echo.next()).body, 'fence');
  assert.equal(snap.items.length, 1, 'exactly one MESSAGE for the subscribe route');

  const reqs = backend.received('/snapshot', (j) => j.session === session);
  assert.equal(reqs.length, 1, 'one POST to the backend');
  assert.equal(reqs[0].json.kind, 'subscribe');
  assert.equal(reqs[0].json.destination, '/app/snapshot');
  assert.equal(reqs[0].json.path, '/snapshot');
  assert.equal(reqs[0].json.headers.id, 'snap-1');

  // stompjs apps unsubscribe such subscriptions later (harmless), and may subscribe again
  // with the same id: each SUBSCRIBE gets its own answer.
  await snap.unsubscribe(c);
  const again = await c.subscribe('/app/snapshot', { id: 'snap-1' });
  const m2 = await again.next();
  assert.equal(m2.body, 'snapshot');
  assert.equal(m2.headers.subscription, 'snap-1');
  assert.notEqual(m2.headers['message-id'], m.headers['message-id']);
  c.assertQuiet();
});

test('a SEND to /app/nothing (no route) is dropped: RECEIPT, no ERROR, still connected', async (t) => {
  const c = await connected(t, ctx.broker);
  const receipt = await c.withReceipt((id) =>
    c.client.publish({ destination: '/app/nothing', body: 'anyone?', headers: { receipt: id } }),
  );
  assert.equal(receipt.command, 'RECEIPT');

  const ping = fresh('/topic/ping');
  const pings = await c.subscribe(ping);
  await c.publish({ destination: ping, body: 'still here' });
  assert.equal((await pings.next()).body, 'still here');
  assert.equal(c.client.connected, true);
  assert.equal(c.closes.items.length, 0, 'the socket stays open');
  c.assertQuiet();

  const res = await fetch(`${ctx.broker.httpUrl}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith('stompbox_app_unhandled_total'));
  assert.ok(line, `/metrics has stompbox_app_unhandled_total:\n${text}`);
  assert.ok(Number(line.split(/\s+/).pop()) >= 1, line);
});
