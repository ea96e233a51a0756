// Heart-beats: negotiated per spec and kept up in both directions over an idle period.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { useBroker } from '../lib/broker.js';
import { connected, eventually, fresh, within } from '../lib/client.js';

// Short heart-beats and a short grace, so a missing heart-beat in either direction would
// break the connection well within the idle period below.
const ctx = useBroker({ config: { stomp: { heartbeat: [200, 200], heartbeat_grace_ms: 500 } } });

// Idle periods are measured in heart-beats seen, with a deadline, not in wall-clock sleeps.
const IDLE_BEATS = 10; // about 2 s at 200 ms

test('heart-beats keep an idle connection up, then a publish still round-trips', async (t) => {
  const c = await connected(t, ctx.broker, { heartbeatIncoming: 200, heartbeatOutgoing: 200 });
  assert.equal(c.connects.items[0].headers['heart-beat'], '200,200');
  const dest = fresh('/topic/hb');
  const inbox = await c.subscribe(dest);

  const beatsBefore = c.heartbeatsReceived;
  // Deliberately idle: nothing but heart-beats may flow, for about 2 s (well past the 400 ms
  // a silent side would survive).
  await eventually(
    () => c.heartbeatsReceived - beatsBefore >= IDLE_BEATS,
    `${IDLE_BEATS} server heart-beats`,
    5_000,
  );

  assert.equal(c.closes.items.length, 0, 'no WebSocket close while idle');
  assert.equal(c.disconnects.items.length, 0, 'no disconnect while idle');
  assert.equal(c.heartbeatsLost, 0, 'stompjs never missed a server heart-beat');
  assert.equal(c.client.connected, true);

  await c.publish({ destination: dest, body: 'still alive' });
  assert.equal((await inbox.next()).body, 'still alive');
  c.assertQuiet();
});

test('server sends no heart-beats when the client asks for none', async (t) => {
  // CONNECT heart-beat:200,0 — the client sends every 200 ms and wants none back.
  const c = await connected(t, ctx.broker, { heartbeatIncoming: 0, heartbeatOutgoing: 200 });
  const received = c.rawIncoming.length;
  // Three heart-beat intervals, counted by the client's own heart-beats: a server ignoring
  // the client's 0 would have sent some by then.
  const sentBeats = () => c.rawOutgoing.filter((m) => m.bytes === 1).length;
  const sentBefore = sentBeats();
  await eventually(() => sentBeats() - sentBefore >= 3, 'three client heart-beats', 5_000);
  assert.equal(c.heartbeatsReceived, 0);
  assert.equal(c.rawIncoming.length, received, 'nothing at all arrived while idle');
  assert.equal(c.client.connected, true);
  c.assertQuiet();
});

test('server closes a connection whose client stops sending heart-beats', async () => {
  // A raw WebSocket promising heart-beats every 200 ms and then staying silent.
  const ws = new WebSocket(ctx.broker.url, ['v12.stomp']);
  const frames = [];
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('message', (data) => frames.push(data.toString()));
  try {
    await within(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }), 'WebSocket open');
    const start = Date.now();
    ws.send('CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:200,0\n\n\0');
    await within(closed, 'server to close the silent connection');
    const elapsed = Date.now() - start;
    assert.ok(frames[0].startsWith('CONNECTED\n'), `first frame: ${JSON.stringify(frames[0])}`);
    // Negotiated receive interval 200 ms + the grace capped at the interval (200 ms of the
    // 500 ms configured), counted from the CONNECT.
    assert.ok(elapsed >= 350, `closed after ${elapsed} ms, before the grace ran out`);
    assert.ok(elapsed < 3000, `closed only after ${elapsed} ms`);
  } finally {
    ws.terminate();
  }
});
