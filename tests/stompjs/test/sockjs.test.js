// SockJS: STOMP through sockjs-client 1.x, once per SockJS transport (websocket, xhr-streaming,
// xhr-polling, eventsource), against the SockJS endpoint at the WebSocket path
// (http://127.0.0.1:PORT/ws); then the SockJS HTTP protocol itself with plain fetch.
//
// sockjs-client runs with its Node drivers: faye-websocket for websocket, node:http for the XHR
// transports (xhr_send bodies go out with Transfer-Encoding: chunked), the `eventsource` package
// for eventsource. Each SockJS object is restricted to one transport and checked to have used it,
// so a silent fallback to another transport cannot make a test pass. htmlfile and the iframe
// transports need a browser document, so sockjs-client in Node never picks them: they are
// checked at the HTTP level only.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import SockJS from 'sockjs-client';

import { useBroker } from '../lib/broker.js';
import {
  connected,
  eventually,
  fresh,
  Inbox,
  TestClient,
  WAIT_MS,
  within,
} from '../lib/client.js';

// Short STOMP heart-beats with a short grace: a broker that missed the client's heart-beats
// arriving through SockJS would drop the session within the idle period below. Short SockJS
// heartbeat frames and disconnect delay, so both are observable in a test. A streaming limit
// below the 100 KiB message size, so every large message makes the broker end the
// xhr-streaming / eventsource response and sockjs-client open the next one.
const HEARTBEAT_MS = 500;
const SOCKJS_HEARTBEAT_MS = 400;
const DISCONNECT_DELAY_MS = 1000;
const ctx = useBroker({
  config: {
    stomp: {
      heartbeat: [HEARTBEAT_MS, HEARTBEAT_MS],
      heartbeat_grace_ms: 1500,
      max_frame_size: 1024 * 1024,
    },
    sockjs: {
      heartbeat_ms: SOCKJS_HEARTBEAT_MS,
      disconnect_delay_ms: DISCONNECT_DELAY_MS,
      streaming_bytes_limit: 65_536,
    },
  },
});

const TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource'];


/** http://127.0.0.1:PORT/ws: the SockJS endpoint, at the WebSocket endpoint's path. */
function sockjsUrl() {
  return `${ctx.broker.httpUrl}${ctx.broker.wsPath}`;
}

/**
 * A TestClient (not yet connected; closed when `t` ends) whose stompjs Client talks through
 * sockjs-client restricted to `transport`. `c.sockets` gets every SockJS object the client made
 * (one per connection attempt), `c.sockjsHeartbeats` counts SockJS `h` frames.
 */
function sockjsClient(t, transport, conf = {}) {
  const sockets = [];
  const c = new TestClient(ctx.broker, {
    webSocketFactory: () => {
      // `timeout`: the default (a few RTTs, well under 1 s on loopback) is too tight for a
      // loaded machine; a transport that times out would be closed, not fallen back from.
      const sock = new SockJS(sockjsUrl(), null, { transports: [transport], timeout: WAIT_MS });
      sock.addEventListener('heartbeat', () => c.sockjsHeartbeats++);
      sock.addEventListener('message', (e) => c.sockjsMessages.push(e.data));
      sockets.push(sock);
      return sock;
    },
    ...conf,
  });
  c.sockets = sockets;
  c.sockjsHeartbeats = 0;
  c.sockjsMessages = []; // every SockJS message as sockjs-client delivered it (a STOMP frame)
  t.after(() => c.close());
  return c;
}

/** Fails unless the client's latest SockJS object is open over `transport`. */
function assertTransport(c, transport) {
  const sock = c.sockets.at(-1);
  assert.ok(sock, 'the client made a SockJS object');
  assert.equal(sock.transport, transport, `sockjs-client used ${sock.transport}, not ${transport}`);
  assert.equal(sock.readyState, SockJS.OPEN, 'the SockJS object is open');
}

/** A connected sockjsClient, checked to be on `transport`. */
async function sockjsConnected(t, transport, conf = {}) {
  const c = sockjsClient(t, transport, conf);
  await c.connect();
  assertTransport(c, transport);
  return c;
}

/** The value of an unlabelled gauge or counter on /metrics. */
async function metric(name) {
  const res = await fetch(`${ctx.broker.httpUrl}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `/metrics has ${name}`);
  return Number(line.split(/\s+/).pop());
}

/** `bytes` bytes of text with characters JSON must escape, and multi-byte ones at the end. */
function bigBody(bytes, seed) {
  const tail = 'é✓😀'; // 2 + 3 + 4 bytes
  const unit = `${seed}|0123456789 abcdefghijklmnopqrstuvwxyz "quoted" back\\slash\tline\n`;
  const ascii = unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes - Buffer.byteLength(tail));
  return ascii + tail;
}

/** Where two strings first differ, for a readable failure on a large body. */
function describeDifference(got, want) {
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  return (
    `length ${got.length} (want ${want.length}), first difference at ${i}: ` +
    `${JSON.stringify(got.slice(i, i + 40))} vs ${JSON.stringify(want.slice(i, i + 40))}`
  );
}

// Characters the SockJS layers must carry unchanged in both directions: JSON escapes (quote,
// backslash, control characters, NUL), characters sockjs-client escapes itself (U+2028/9,
// combining marks, surrogate pairs as \ud83d\ude00), markup, and percent signs, which the
// eventsource transport must escape as %25 (sockjs-client runs decodeURI over each event).
const TRICKY =
  'quote " backslash \\ slash / newline \n cr \r tab \t nul \u0000 ctl \u0001\u001f ' +
  'U+2028 \u2028 U+2029 \u2029 e\u0301 é ✓ 😀 </script><b>&amp; %41 50%25 off';

for (const transport of TRANSPORTS) {
  describe(`SockJS ${transport}`, () => {
    test('sockjs-client opens the session over this transport', async (t) => {
      const c = await sockjsConnected(t, transport);
      assert.equal(c.sockets.length, 1, 'one SockJS connection, no retry');
      const connectedFrame = c.connects.items[0];
      assert.equal(connectedFrame.headers.version, '1.2');
      assert.ok(connectedFrame.headers.session, 'CONNECTED has a session');
      assert.equal(c.closes.items.length, 0);
      c.assertQuiet();
    });

    test('subscribe, publish with a receipt, receive; order kept; plain WebSocket clients mix in', async (t) => {
      const sub = await sockjsConnected(t, transport);
      const pub = await sockjsConnected(t, transport);
      const plain = await connected(t, ctx.broker); // ws://127.0.0.1:PORT/ws, same path
      const dest = fresh('/topic/sockjs');
      const inbox = await sub.subscribe(dest, { id: 'sockjs-sub' });

      await pub.publish({
        destination: dest,
        body: `hello over ${transport}`,
        headers: { 'content-type': 'text/plain;charset=utf-8', 'x-trace': 'abc-123' },
      });
      const m = await inbox.next();
      assert.equal(m.body, `hello over ${transport}`);
      assert.equal(m.headers.destination, dest);
      assert.equal(m.headers.subscription, 'sockjs-sub');
      assert.equal(m.headers['content-type'], 'text/plain;charset=utf-8');
      assert.equal(m.headers['x-trace'], 'abc-123');
      assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');

      // A burst: several STOMP frames per SockJS frame (a[...]) or per xhr_send, in order.
      const bodies = Array.from({ length: 30 }, (_, i) => `m${i}`);
      for (const body of bodies) pub.client.publish({ destination: dest, body });
      assert.deepEqual((await inbox.take(30)).map((x) => x.body), bodies);

      // Between a SockJS client and a plain WebSocket client, both ways.
      await plain.publish({ destination: dest, body: 'from plain WebSocket' });
      assert.equal((await inbox.next()).body, 'from plain WebSocket');
      const plainInbox = await plain.subscribe(dest);
      await pub.publish({ destination: dest, body: `from ${transport}` });
      assert.equal((await plainInbox.next()).body, `from ${transport}`);
      assert.equal((await inbox.next()).body, `from ${transport}`);

      for (const c of [sub, pub, plain]) c.assertQuiet();
      assert.equal(sub.closes.items.length + pub.closes.items.length, 0, 'no SockJS close');
    });

    test('bodies and headers with characters SockJS must escape arrive intact', async (t) => {
      const c = await sockjsConnected(t, transport);
      const dest = fresh('/topic/sockjs-escapes');
      const inbox = await c.subscribe(dest);
      // No receipt: should the transport alter the MESSAGE, a following RECEIPT would be lost
      // in stompjs's parser (content-length no longer matching), hiding the cause.
      c.client.publish({ destination: dest, body: TRICKY, headers: { 'x-tricky': 'a:b "c" é 😀 %41' } });
      const raw = await eventually(
        () => c.sockjsMessages.find((x) => x.startsWith('MESSAGE\n')),
        'the MESSAGE frame as a SockJS message',
      );
      const rawBody = raw.slice(raw.indexOf('\n\n') + 2, raw.lastIndexOf('\0'));
      // An altered body leaves stompjs's parser out of step: drop the socket rather than wait
      // at the end of the test for a DISCONNECT receipt it could not parse.
      if (rawBody !== TRICKY) c.client.forceDisconnect();
      assert.equal(rawBody, TRICKY, 'the MESSAGE body as sockjs-client delivered it');
      const m = await inbox.next();
      assert.equal(m.body, TRICKY);
      assert.equal(m.headers['content-length'], String(Buffer.byteLength(TRICKY)));
      assert.equal(m.headers['x-tricky'], 'a:b "c" é 😀 %41');
      c.assertQuiet();
    });

    test('100 KiB messages round-trip intact, whole and split into 16 KiB SockJS messages', async (t) => {
      const sub = await sockjsConnected(t, transport);
      const pub = await sockjsConnected(t, transport);
      const splitter = await sockjsConnected(t, transport, {
        splitLargeFrames: true,
        maxWebSocketChunkSize: 16 * 1024,
      });
      const dest = fresh('/topic/sockjs-big');
      const inbox = await sub.subscribe(dest);
      const whole = bigBody(100 * 1024, 'whole');
      const split = bigBody(100 * 1024, 'split');
      await pub.publish({ destination: dest, body: whole });
      await splitter.publish({ destination: dest, body: split });
      await pub.publish({ destination: dest, body: 'after the big ones' });

      const [a, b, after] = await inbox.take(3);
      assert.ok(a.body === whole, `whole body: ${describeDifference(a.body, whole)}`);
      assert.equal(a.headers['content-length'], String(100 * 1024));
      assert.ok(b.body === split, `split body: ${describeDifference(b.body, split)}`);
      assert.equal(after.body, 'after the big ones');
      // The streaming limit ends responses, never the SockJS session.
      for (const c of [sub, pub, splitter]) {
        assert.equal(c.closes.items.length, 0, 'no SockJS close');
        assert.equal(c.sockets.length, 1, 'no reconnection');
        c.assertQuiet();
      }
    });

    test('STOMP heart-beats both ways keep an idle session up', async (t) => {
      const c = await sockjsConnected(t, transport, {
        heartbeatIncoming: HEARTBEAT_MS,
        heartbeatOutgoing: HEARTBEAT_MS,
      });
      assert.equal(c.connects.items[0].headers['heart-beat'], `${HEARTBEAT_MS},${HEARTBEAT_MS}`);
      const dest = fresh('/topic/sockjs-hb');
      const inbox = await c.subscribe(dest);

      const beatsBefore = c.heartbeatsReceived;
      // Deliberately idle: only heart-beats flow, six of them (about 3 s). The broker drops a
      // client silent for 500 + 1500 ms; stompjs drops a broker silent for 2 x 500 ms.
      await eventually(() => c.heartbeatsReceived - beatsBefore >= 6, 'six broker heart-beats', 10_000);

      assert.equal(c.closes.items.length, 0, 'no SockJS close while idle');
      assert.equal(c.disconnects.items.length, 0, 'no disconnect while idle');
      assert.equal(c.heartbeatsLost, 0, 'stompjs never missed a broker heart-beat');
      assert.equal(c.sockets.length, 1, 'no reconnection');
      assertTransport(c, transport);
      assert.equal(c.client.connected, true);

      await c.publish({ destination: dest, body: 'still alive' });
      assert.equal((await inbox.next()).body, 'still alive');
      c.assertQuiet();
    });

    test('SockJS heartbeat frames (h) arrive on an idle session without STOMP heart-beats', async (t) => {
      const c = await sockjsConnected(t, transport, { heartbeatIncoming: 0, heartbeatOutgoing: 0 });
      // xhr-streaming's 2 KiB prelude of h's counts as one; only count what comes later.
      const before = c.sockjsHeartbeats;
      await eventually(
        () => c.sockjsHeartbeats - before >= 2,
        'two SockJS h frames',
        10 * SOCKJS_HEARTBEAT_MS,
      );
      assert.equal(c.heartbeatsReceived, 0, 'no STOMP heart-beats when none were asked for');
      assert.equal(c.closes.items.length, 0);
      assert.equal(c.client.connected, true);
      c.assertQuiet();
    });

    test('after the client drops the transport it reconnects through SockJS; the broker reaps the old session', async (t) => {
      const dest = fresh('/topic/sockjs-reconnect');
      const inbox = new Inbox(dest);
      const subscribed = []; // one promise per onConnect: the SUBSCRIBE's RECEIPT
      // No STOMP heart-beats: the abandoned session must go through disconnect_delay_ms alone.
      const c = sockjsClient(t, transport, {
        reconnectDelay: 100,
        heartbeatIncoming: 0,
        heartbeatOutgoing: 0,
        onConnect: (_frame, tc) => {
          subscribed.push(
            tc.withReceipt((receipt) => tc.client.subscribe(dest, (m) => inbox.push(m), { receipt })),
          );
        },
      });
      const pub = await sockjsConnected(t, transport);
      const first = await c.connect();
      assertTransport(c, transport);
      await subscribed[0];
      const subscriptions = await metric('stompbox_subscriptions');
      await pub.publish({ destination: dest, body: 'before' });
      assert.equal((await inbox.next()).body, 'before');

      c.client.forceDisconnect(); // closes the SockJS object: the transport's requests end
      await c.closes.next();
      const second = await c.connects.next(10_000);
      assert.equal(c.sockets.length, 2, 'a new SockJS object for the new connection');
      assertTransport(c, transport);
      assert.notEqual(second.headers.session, first.headers.session, 'a new STOMP session');
      await within(subscribed[1], 'resubscription');

      // The broker closes the abandoned SockJS session within disconnect_delay_ms, dropping its
      // subscription: the count returns to what it was with one subscription.
      await eventually(
        async () => (await metric('stompbox_subscriptions')) === subscriptions,
        `stompbox_subscriptions back to ${subscriptions} (abandoned session closed after ` +
          `disconnect_delay_ms = ${DISCONNECT_DELAY_MS})`,
      );

      await pub.publish({ destination: dest, body: 'after' });
      const m = await inbox.next();
      assert.equal(m.body, 'after');
      assert.deepEqual(inbox.bodies, ['before', 'after']);
      c.assertQuiet();
      pub.assertQuiet();
    });

    test('a session the broker ends (ERROR) closes the SockJS connection; the client reconnects', async (t) => {
      const dest = fresh('/topic/sockjs-error');
      const inbox = new Inbox(dest);
      const subscribed = [];
      const c = sockjsClient(t, transport, {
        reconnectDelay: 100,
        onConnect: (_frame, tc) => {
          subscribed.push(
            tc.withReceipt((receipt) => tc.client.subscribe(dest, (m) => inbox.push(m), { receipt })),
          );
        },
      });
      await c.connect();
      await subscribed[0];

      c.client.publish({ destination: '/nowhere/x', body: 'hi', headers: { receipt: 'bad-1' } });
      const err = await c.errors.next();
      assert.equal(err.headers.message, 'unknown destination');
      assert.equal(err.headers['receipt-id'], 'bad-1');
      // The broker's close reaches sockjs-client as a close frame (c[code,"reason"]) or, over
      // websocket, the WebSocket close.
      const close = await c.closes.next();
      assert.equal(typeof close.code, 'number');

      await c.connects.next(10_000);
      assert.equal(c.sockets.length, 2);
      assertTransport(c, transport);
      await within(subscribed[1], 'resubscription');
      await c.publish({ destination: dest, body: 'back' });
      assert.equal((await inbox.next()).body, 'back');
      assert.equal(c.errors.items.length, 1, 'only the one ERROR');
      assert.deepEqual(c.unhandled, [], 'no unhandled frames');
    });
  });
}

describe('SockJS HTTP protocol', () => {
  const base = () => sockjsUrl();
  const origin = () => ctx.broker.httpUrl; // the broker's own origin, always allowed
  let sessionCounter = 0;
  const newSessionId = () => `s${process.pid}x${++sessionCounter}`;
  const timeout = () => AbortSignal.timeout(WAIT_MS);

  /** Opens a session over xhr polling: POST .../xhr answers the open frame. */
  async function openXhrSession(id) {
    const res = await fetch(`${base()}/000/${id}/xhr`, { method: 'POST', signal: timeout() });
    assert.equal(res.status, 200, `POST /000/${id}/xhr`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/javascript/);
    assert.equal(await res.text(), 'o\n');
  }

  function xhrSend(id, body) {
    return fetch(`${base()}/000/${id}/xhr_send`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain' },
      signal: timeout(),
    });
  }

  test('GET /ws/info: 200 JSON with websocket:true, CORS headers echoing the Origin', async () => {
    const res = await fetch(`${base()}/info`, { headers: { Origin: origin() }, signal: timeout() });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('access-control-allow-origin'), origin());
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    assert.match(res.headers.get('cache-control') ?? '', /no-cache/);
    const info = await res.json();
    assert.equal(info.websocket, true);
    assert.equal(info.cookie_needed, false);
    assert.deepEqual(info.origins, ['*:*']);
    assert.equal(typeof info.entropy, 'number');

    // Preflight for the same.
    const pre = await fetch(`${base()}/info`, {
      method: 'OPTIONS',
      headers: { Origin: origin(), 'Access-Control-Request-Method': 'GET' },
      signal: timeout(),
    });
    assert.equal(pre.status, 204, 'OPTIONS /ws/info');
    assert.equal(pre.headers.get('access-control-allow-origin'), origin());
    assert.match(pre.headers.get('access-control-allow-methods') ?? '', /GET/);
    await pre.arrayBuffer();
  });

  test('GET /ws/iframe.html: the iframe page, cacheable by ETag', async () => {
    const res = await fetch(`${base()}/iframe.html`, { signal: timeout() });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const page = await res.text();
    assert.match(page, /<script[^>]+src=/, 'loads sockjs-client');
    assert.match(page, /SockJS/);
    const etag = res.headers.get('etag');
    assert.ok(etag, 'iframe.html has an ETag');
    const again = await fetch(`${base()}/iframe.html`, {
      headers: { 'If-None-Match': etag },
      signal: timeout(),
    });
    assert.equal(again.status, 304);
    await again.arrayBuffer();
  });

  test('xhr_send: 404 for an unknown session, 204 for a valid body, 500 for one that is not a JSON array of strings', async () => {
    const unknown = await xhrSend('unknownsess', '["x"]');
    assert.equal(unknown.status, 404, 'POST /ws/000/unknownsess/xhr_send');
    await unknown.arrayBuffer();

    // CORS on a session request too.
    const id = newSessionId();
    const open = await fetch(`${base()}/000/${id}/xhr`, {
      method: 'POST',
      headers: { Origin: origin() },
      signal: timeout(),
    });
    assert.equal(open.status, 200);
    assert.equal(open.headers.get('access-control-allow-origin'), origin());
    assert.equal(open.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(await open.text(), 'o\n');
    // A STOMP heart-beat (EOL) before CONNECT: accepted, nothing to answer.
    const ok = await xhrSend(id, '["\\n"]');
    assert.equal(ok.status, 204, 'xhr_send ["\\n"]');
    await ok.arrayBuffer();

    // Each bad body on a session of its own (a server may close a session after bad data).
    const bad = ['', 'x', '["unterminated', '{"a":"b"}', '"str"', '[1,2]', '[null]', '[["x"]]'];
    const statuses = {};
    for (const body of bad) {
      const sid = newSessionId();
      await openXhrSession(sid);
      const res = await xhrSend(sid, body);
      statuses[JSON.stringify(body)] = res.status;
      await res.arrayBuffer();
    }
    assert.deepEqual(
      statuses,
      Object.fromEntries(bad.map((body) => [JSON.stringify(body), 500])),
      'xhr_send status by body',
    );
  });

  test('htmlfile: the page calls the callback with the open frame; no callback is a 500', async () => {
    const id = newSessionId();
    const ac = new AbortController();
    const res = await fetch(`${base()}/000/${id}/htmlfile?c=myCallback`, { signal: ac.signal });
    try {
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      // A streaming response: read until the open frame, then drop it.
      const decoder = new TextDecoder();
      const reader = res.body.getReader();
      let page = '';
      await within(
        (async () => {
          while (!/p\("o"\)/.test(page)) {
            const { value, done } = await reader.read();
            if (done) break;
            page += decoder.decode(value, { stream: true });
          }
        })(),
        'the htmlfile open frame',
      );
      assert.match(page, /parent\.myCallback/);
      assert.match(page, /<script>\s*p\("o"\);\s*<\/script>/);
    } finally {
      ac.abort();
    }

    const missing = await fetch(`${base()}/000/${newSessionId()}/htmlfile`, { signal: timeout() });
    assert.equal(missing.status, 500, 'htmlfile without c=');
    await missing.arrayBuffer();
  });

  test('raw WebSocket at /ws/websocket carries STOMP frames without SockJS framing', async (t) => {
    const url = `${ctx.broker.url}/websocket`;
    const c = await connected(t, ctx.broker, { brokerURL: url });
    const dest = fresh('/topic/sockjs-raw');
    const inbox = await c.subscribe(dest);
    await c.publish({ destination: dest, body: 'raw' });
    assert.equal((await inbox.next()).body, 'raw');
    assert.ok(
      c.rawIncoming.some((m) => m.command === 'CONNECTED'),
      'frames arrive as plain STOMP (no o / a[...] framing)',
    );
    c.assertQuiet();
  });
});
