// Authentication with allow_anonymous = false: a static user's login/passcode, and HS256 JWTs as
// the CONNECT passcode, as a CONNECT `Authorization: Bearer` header (stomp.js connectHeaders),
// as the handshake's Authorization header and as the access_token query parameter; refusals
// (ERROR "authentication failed", then close) and expiry during the connection ("token expired").

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { hashPassword, tomlValue, useBroker } from '../lib/broker.js';
import { connected, fresh, TestClient } from '../lib/client.js';

const SECRET = 'stompjs-suite-hs256-secret-0123456789';
const DAVE = { login: 'dave', passcode: 'dave-passw0rd' };

const ctx = useBroker(async () => {
  const daveHash = await hashPassword(DAVE.passcode);
  return {
    config: { auth: { allow_anonymous: false } },
    // Called when the config is written: the secret file goes into the broker's temp dir.
    toml: (broker) => {
      const secretFile = path.join(broker.dir, 'jwt.secret');
      writeFileSync(secretFile, `${SECRET}\n`);
      return `
[[auth.users]]
name = "dave"
password_hash = ${tomlValue(daveHash)}

[auth.jwt]
algorithm = "HS256"
secret_file = ${tomlValue(secretFile)}
user_claim = "sub"
`;
    },
  };
});

const b64url = (text) => Buffer.from(text).toString('base64url');

/** An HS256 JWT for `claims`, signed with `secret`. */
function jwt(claims, secret = SECRET) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

const nowSecs = () => Math.floor(Date.now() / 1000);
/** A token for `sub` valid for an hour. */
const token = (sub) => jwt({ sub, iat: nowSecs(), exp: nowSecs() + 3600 });

/** Checks that a connected client can publish and receive. */
async function roundTrip(c) {
  const dest = fresh('/topic/auth');
  const inbox = await c.subscribe(dest);
  await c.publish({ destination: dest, body: 'authenticated' });
  assert.equal((await inbox.next()).body, 'authenticated');
}

/** Connects with `conf` and expects ERROR "authentication failed", then the close. */
async function refused(t, conf) {
  const c = new TestClient(ctx.broker, conf);
  t.after(() => c.close());
  c.client.activate();
  const err = await c.errors.next();
  assert.equal(err.command, 'ERROR');
  assert.equal(err.headers.message, 'authentication failed');
  await c.closes.next();
  assert.equal(c.connects.items.length, 0, 'no CONNECTED');
  assert.equal(c.client.connected, false);
  return err;
}

test('static user: the right login/passcode gets CONNECTED with user-name', async (t) => {
  const c = await connected(t, ctx.broker, { connectHeaders: DAVE });
  assert.equal(c.connects.items[0].headers['user-name'], 'dave');
  await roundTrip(c);
  c.assertQuiet();
});

test('static user: a wrong passcode gets ERROR "authentication failed" and the close', async (t) => {
  const err = await refused(t, { connectHeaders: { login: 'dave', passcode: 'wrong' } });
  assert.doesNotMatch(`${JSON.stringify(err.headers)} ${err.body}`, /passcode|password|dave/i);
});

test('an unknown login gets the same ERROR', async (t) => {
  await refused(t, { connectHeaders: { login: 'mallory', passcode: DAVE.passcode } });
});

test('an unknown login costs the same argon2 verification as a wrong passcode', async (t) => {
  // README: "an unknown login costs the same verification as a wrong passcode", so refusal
  // times do not tell which logins exist. Argon2 dominates a refusal (hundreds of ms in a
  // debug build); without it a refusal takes a few ms. Minimum of two each, interleaved.
  const timed = async (conf) => {
    const start = performance.now();
    await refused(t, conf);
    return performance.now() - start;
  };
  const known = [];
  const unknown = [];
  for (let i = 0; i < 2; i++) {
    known.push(await timed({ connectHeaders: { login: 'dave', passcode: `wrong-${i}` } }));
    unknown.push(await timed({ connectHeaders: { login: `nobody-${i}`, passcode: `wrong-${i}` } }));
  }
  const k = Math.min(...known);
  const u = Math.min(...unknown);
  assert.ok(
    u >= k / 2,
    `unknown login refused in ${u.toFixed(1)} ms, wrong passcode in ${k.toFixed(1)} ms: ` +
      'refusal times tell which logins exist',
  );
});

test('no credentials: anonymous connections are refused', async (t) => {
  await refused(t, {});
});

test('JWT as the CONNECT passcode', async (t) => {
  const c = await connected(t, ctx.broker, { connectHeaders: { passcode: token('erin') } });
  assert.equal(c.connects.items[0].headers['user-name'], 'erin');
  await roundTrip(c);
  c.assertQuiet();
});

test('JWT in connectHeaders Authorization: Bearer', async (t) => {
  const c = await connected(t, ctx.broker, {
    connectHeaders: { Authorization: `Bearer ${token('frank')}` },
  });
  assert.equal(c.connects.items[0].headers['user-name'], 'frank');
  await roundTrip(c);
  c.assertQuiet();
});

test('JWT as the access_token query parameter of the WebSocket URL', async (t) => {
  const c = await connected(t, ctx.broker, {
    brokerURL: `${ctx.broker.url}?access_token=${token('grace')}`,
  });
  assert.equal(c.connects.items[0].headers['user-name'], 'grace');
  await roundTrip(c);
  c.assertQuiet();
});

test("JWT in the WebSocket handshake's Authorization header", async (t) => {
  const c = await connected(t, ctx.broker, {
    wsOptions: { headers: { Authorization: `Bearer ${token('heidi')}` } },
  });
  assert.equal(c.connects.items[0].headers['user-name'], 'heidi');
  c.assertQuiet();
});

test('the JWT user can use its user destinations', async (t) => {
  const c = await connected(t, ctx.broker, { connectHeaders: { passcode: token('ivan') } });
  const inbox = await c.subscribe('/user/queue/inbox');
  const sender = await connected(t, ctx.broker, { connectHeaders: { passcode: token('judy') } });
  await sender.publish({ destination: '/user/ivan/queue/inbox', body: 'for ivan' });
  const m = await inbox.next();
  assert.equal(m.body, 'for ivan');
  assert.equal(m.headers.destination, '/user/queue/inbox');
  c.assertQuiet();
  sender.assertQuiet();
});

test('an expired JWT is refused', async (t) => {
  const expired = jwt({ sub: 'erin', iat: nowSecs() - 120, exp: nowSecs() - 60 });
  await refused(t, { connectHeaders: { passcode: expired } });
  await refused(t, { connectHeaders: { Authorization: `Bearer ${expired}` } });
  await refused(t, { brokerURL: `${ctx.broker.url}?access_token=${expired}` });
});

test('a JWT with a bad signature, the wrong key, no exp or no sub is refused', async (t) => {
  const tampered = `${token('erin').slice(0, -4)}AAAA`;
  const otherKey = jwt({ sub: 'erin', exp: nowSecs() + 3600 }, 'some-other-secret');
  const noExp = jwt({ sub: 'erin' });
  const noSub = jwt({ name: 'erin', exp: nowSecs() + 3600 });
  for (const passcode of [tampered, otherKey, noExp, noSub]) {
    await refused(t, { connectHeaders: { passcode } });
  }
});

test('a JWT expiring during the connection: ERROR "token expired", then the close', async (t) => {
  // exp is in whole seconds: between 2 and 3 s from now.
  const exp = nowSecs() + 3;
  const c = await connected(t, ctx.broker, {
    connectHeaders: { passcode: jwt({ sub: 'kim', exp }) },
  });
  assert.equal(c.connects.items[0].headers['user-name'], 'kim');
  await roundTrip(c);
  assert.equal(c.errors.items.length, 0, 'no ERROR before the token expires');

  const err = await c.errors.next(exp * 1000 - Date.now() + 3000);
  const at = Date.now();
  assert.equal(err.headers.message, 'token expired');
  assert.ok(at >= exp * 1000 - 100, `ERROR ${exp * 1000 - at} ms before exp`);
  await c.closes.next();
  assert.equal(c.client.connected, false);
});
