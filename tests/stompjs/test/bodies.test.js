// Message bodies: binary with NULs, UTF-8 text, 1 MiB whole and split into 8 KiB WebSocket
// messages (splitLargeFrames), and STOMP 1.2 header escaping.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../lib/broker.js';
import { connected, fresh, Versions } from '../lib/client.js';

const MIB = 1024 * 1024;
const ctx = useBroker({ config: { stomp: { max_frame_size: 2 * MIB } } });

/** The WebSocket messages `c` received that carried MESSAGE frames. */
const messageFrames = (c) => c.rawIncoming.filter((r) => r.command === 'MESSAGE');

/** A deterministic ASCII string of `n` characters that is not a simple repetition. */
function asciiBody(n) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';
  let x = 0x12345678;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = alphabet[x >>> 26];
  }
  return out.join('');
}

/** Deterministic bytes covering all 256 values, with runs of NULs. */
function binaryBody(n) {
  const bytes = new Uint8Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    bytes[i] = i % 97 < 5 ? 0 : x >>> 24;
  }
  return bytes;
}

test('binary bodies with NULs round-trip byte for byte as binary WebSocket messages', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/bin');
  const inbox = await c.subscribe(dest);
  const bodies = [
    new Uint8Array([0]),
    new Uint8Array([0, 0, 0]),
    new Uint8Array([1, 0, 2, 0, 0, 255, 0xc3, 0x28, 0]),
    Uint8Array.from({ length: 256 }, (_, i) => i),
    binaryBody(100_000),
  ];
  for (const b of bodies) {
    await c.publish({
      destination: dest,
      binaryBody: b,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }
  const got = await inbox.take(bodies.length);
  for (let i = 0; i < bodies.length; i++) {
    const m = got[i];
    assert.equal(m.isBinaryBody, true);
    assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(bodies[i]), `body ${i}`);
    assert.equal(m.headers['content-length'], String(bodies[i].length));
    assert.equal(m.headers['content-type'], 'application/octet-stream');
  }
  const frames = messageFrames(c);
  assert.equal(frames.length, bodies.length);
  assert.ok(frames.every((f) => f.binary), 'binary bodies are sent as binary WebSocket messages');
  c.assertQuiet();
});

test('non-UTF-8 bytes go out as a binary message even without a content-type', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/bin');
  const inbox = await c.subscribe(dest);
  const body = new Uint8Array([0xff, 0xfe, 0x00, 0x41]);
  await c.publish({ destination: dest, binaryBody: body });
  const m = await inbox.next();
  assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(body));
  assert.deepEqual(messageFrames(c).map((f) => f.binary), [true]);
  c.assertQuiet();
});

test('an ASCII body with content-type application/octet-stream goes out binary', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/bin');
  const inbox = await c.subscribe(dest);
  await c.publish({
    destination: dest,
    body: 'plain ascii',
    headers: { 'content-type': 'application/octet-stream' },
  });
  const m = await inbox.next();
  assert.equal(m.body, 'plain ascii');
  assert.deepEqual(messageFrames(c).map((f) => f.binary), [true]);
  c.assertQuiet();
});

test('UTF-8 text bodies arrive unchanged as text WebSocket messages', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/utf8');
  const inbox = await c.subscribe(dest);
  const bodies = [
    'héllo wörld',
    'Καλημέρα κόσμε — こんにちは世界 — 你好，世界',
    'emoji: 🎉🚀👩‍💻 and astral 𝄞',
    'colons: and\nnewlines\r\nand\\backslashes',
    'ü'.repeat(10_000),
  ];
  for (const body of bodies) {
    await c.publish({ destination: dest, body, headers: { 'content-type': 'text/plain;charset=utf-8' } });
  }
  const got = await inbox.take(bodies.length);
  for (let i = 0; i < bodies.length; i++) {
    assert.equal(got[i].body, bodies[i]);
    assert.equal(got[i].headers['content-length'], String(Buffer.byteLength(bodies[i])));
  }
  assert.ok(messageFrames(c).every((f) => !f.binary), 'UTF-8 bodies go out as text messages');
  c.assertQuiet();
});

test('a 1 MiB body round-trips sent as one WebSocket message', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/big');
  const inbox = await c.subscribe(dest);
  const body = asciiBody(MIB);
  const sentBefore = c.rawOutgoing.length;
  await c.publish({ destination: dest, body });
  const sendMessages = c.rawOutgoing.slice(sentBefore).filter((r) => r.bytes > MIB);
  assert.equal(sendMessages.length, 1, 'the SEND went as a single WebSocket message');
  const m = await inbox.next();
  assert.equal(m.body.length, MIB);
  assert.ok(m.body === body, '1 MiB body identical');
  assert.equal(m.headers['content-length'], String(MIB));
  c.assertQuiet();
});

test('a 1 MiB body round-trips with splitLargeFrames at 8 KiB chunks', async (t) => {
  const c = await connected(t, ctx.broker, {
    splitLargeFrames: true,
    maxWebSocketChunkSize: 8 * 1024,
  });
  const dest = fresh('/topic/big');
  const inbox = await c.subscribe(dest);
  const body = asciiBody(MIB);
  const sentBefore = c.rawOutgoing.length;
  await c.publish({ destination: dest, body });
  const chunks = c.rawOutgoing.slice(sentBefore);
  // The SEND frame (1 MiB + headers) in 8 KiB pieces, plus nothing else but heart-beats.
  const pieces = chunks.filter((r) => r.bytes > 1);
  assert.ok(pieces.length >= MIB / (8 * 1024), `SEND split into ${pieces.length} messages`);
  assert.ok(pieces.every((r) => r.bytes <= 8 * 1024), 'no piece larger than 8 KiB');
  const m = await inbox.next();
  assert.equal(m.body.length, MIB);
  assert.ok(m.body === body, '1 MiB body identical after reassembly');
  c.assertQuiet();
});

test('a split multi-byte UTF-8 body is reassembled exactly', async (t) => {
  const c = await connected(t, ctx.broker, {
    splitLargeFrames: true,
    maxWebSocketChunkSize: 8 * 1024,
  });
  const dest = fresh('/topic/big');
  const inbox = await c.subscribe(dest);
  // 2- and 3-byte characters (no surrogate pairs: stompjs splits by UTF-16 code units).
  const body = 'é日ßж'.repeat(30_000);
  await c.publish({ destination: dest, body });
  const m = await inbox.next();
  assert.ok(m.body === body, 'body identical');
  assert.equal(m.headers['content-length'], String(Buffer.byteLength(body)));
  c.assertQuiet();
});

test('a 1 MiB binary body round-trips', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/big');
  const inbox = await c.subscribe(dest);
  const body = binaryBody(MIB);
  await c.publish({ destination: dest, binaryBody: body });
  const m = await inbox.next();
  assert.ok(Buffer.from(body).equals(Buffer.from(m.binaryBody)), '1 MiB binary body identical');
  c.assertQuiet();
});

test('STOMP 1.2 header escaping: values with : \\n \\r \\\\ arrive unchanged', async (t) => {
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/escape');
  const inbox = await c.subscribe(dest);
  const headers = {
    'x-special': 'a:b\nc\\d',
    'x-colons': '::',
    'x-cr': 'carriage\rreturn',
    'x-backslashes': 'C:\\path\\to',
    'x-unicode': 'ünïcödé ✓',
    'x-empty': '',
  };
  await c.publish({ destination: dest, body: 'escaped', headers });
  const m = await inbox.next();
  for (const [k, v] of Object.entries(headers)) {
    assert.equal(m.headers[k], v, `header ${k}`);
  }
  c.assertQuiet();
});

test('repeated headers: the broker forwards the first occurrence', async (t) => {
  // stompjs cannot send a header twice, so this SEND is written to its socket by hand.
  const c = await connected(t, ctx.broker);
  const dest = fresh('/topic/dup');
  const inbox = await c.subscribe(dest);
  c.client.webSocket.send(`SEND\ndestination:${dest}\nx-dup:first\nx-dup:second\n\nbody\0`);
  const m = await inbox.next();
  assert.equal(m.body, 'body');
  assert.equal(m.headers['x-dup'], 'first');
  c.assertQuiet();
});

test('a header value with a newline cannot inject headers for a STOMP 1.0 subscriber', async (t) => {
  // STOMP 1.0 has no header escaping, so the broker cannot pass such a value through as is;
  // whatever it does, the 1.0 subscriber must not see a header nobody sent.
  const old = await connected(t, ctx.broker, { stompVersions: new Versions(['1.0']) });
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/inject');
  const inbox = await old.subscribe(dest);
  await pub.publish({
    destination: dest,
    body: 'payload',
    headers: { 'x-note': 'harmless\ninjected:yes' },
  });
  const m = await inbox.next();
  assert.equal(m.body, 'payload');
  assert.equal(m.headers.destination, dest);
  assert.equal(m.headers.subscription, inbox.id);
  assert.equal(m.headers.injected, undefined, 'no header injected through a newline in a value');
  old.assertQuiet();
  pub.assertQuiet();
});

test('STOMP 1.1 subscribers get \\c \\n \\\\ escapes', async (t) => {
  // stompjs only unescapes in 1.2, so a 1.1 stompjs client sees the escape sequences of the
  // wire format: this checks what the broker wrote.
  const sub = await connected(t, ctx.broker, { stompVersions: new Versions(['1.1']) });
  const pub = await connected(t, ctx.broker);
  const dest = fresh('/topic/escape11');
  const inbox = await sub.subscribe(dest);
  await pub.publish({ destination: dest, body: 'x', headers: { 'x-special': 'a:b\nc\\d' } });
  const m = await inbox.next();
  assert.equal(m.headers['x-special'], 'a\\cb\\nc\\\\d');
  sub.assertQuiet();
});
