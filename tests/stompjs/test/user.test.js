// User destinations (/user): what is sent to /user/{name}/queue/x reaches every session of that
// user subscribed to /user/queue/x, shown as destination:/user/queue/x; other users' sessions
// get nothing, and subscribing to another user's destination is refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hashPassword, tomlValue, useBroker } from '../lib/broker.js';
import { connected, fresh, TestClient } from '../lib/client.js';

const ALICE = { login: 'alice', passcode: 'alice-secret' };
const BOB = { login: 'bob', passcode: 'bob-secret' };

// Runs in useBroker's `before` hook: the hashes must exist before the config is written.
const ctx = useBroker(async () => {
  const [aliceHash, bobHash] = await Promise.all([
    hashPassword(ALICE.passcode),
    hashPassword(BOB.passcode),
  ]);
  return {
    toml: `
[[auth.users]]
name = "alice"
password_hash = ${tomlValue(aliceHash)}

[[auth.users]]
name = "bob"
password_hash = ${tomlValue(bobHash)}
`,
  };
});

test('CONNECTED carries user-name: the login', async (t) => {
  const alice = await connected(t, ctx.broker, { connectHeaders: ALICE });
  const bob = await connected(t, ctx.broker, { connectHeaders: BOB });
  assert.equal(alice.connects.items[0].headers['user-name'], 'alice');
  assert.equal(bob.connects.items[0].headers['user-name'], 'bob');
  const anonymous = await connected(t, ctx.broker);
  assert.equal(anonymous.connects.items[0].headers['user-name'], undefined);
  for (const c of [alice, bob, anonymous]) c.assertQuiet();
});

test("a SEND to /user/alice/queue/notes reaches both of alice's sessions, not bob's", async (t) => {
  const [alice1, alice2, bob] = await Promise.all([
    connected(t, ctx.broker, { connectHeaders: ALICE }),
    connected(t, ctx.broker, { connectHeaders: ALICE }),
    connected(t, ctx.broker, { connectHeaders: BOB }),
  ]);
  const notes1 = await alice1.subscribe('/user/queue/notes', { id: 'notes-a1' });
  const notes2 = await alice2.subscribe('/user/queue/notes', { id: 'notes-a2' });
  const bobNotes = await bob.subscribe('/user/queue/notes', { id: 'notes-b' });

  await bob.publish({
    destination: '/user/alice/queue/notes',
    body: 'hi alice',
    headers: { 'content-type': 'text/plain', 'x-from': 'bob' },
  });
  for (const [inbox, id] of [
    [notes1, 'notes-a1'],
    [notes2, 'notes-a2'],
  ]) {
    const m = await inbox.next();
    assert.equal(m.body, 'hi alice');
    assert.equal(m.headers.destination, '/user/queue/notes');
    assert.equal(m.headers.subscription, id);
    assert.equal(m.headers['x-from'], 'bob');
    assert.equal(m.headers['content-type'], 'text/plain');
  }

  // Then one for bob, sent after alice's on the same connection: it is the first bob gets.
  await alice1.publish({ destination: '/user/bob/queue/notes', body: 'hi bob' });
  const m = await bobNotes.next();
  assert.equal(m.body, 'hi bob');
  assert.equal(m.headers.destination, '/user/queue/notes');
  assert.deepEqual(bobNotes.bodies, ['hi bob'], "bob never got alice's note");
  // And alice's sessions did not get bob's: a receipt on each flushes anything queued.
  await alice1.publish({ destination: fresh('/topic/fence'), body: 'fence' });
  await alice2.publish({ destination: fresh('/topic/fence'), body: 'fence' });
  assert.deepEqual(notes1.bodies, ['hi alice']);
  assert.deepEqual(notes2.bodies, ['hi alice']);
  for (const c of [alice1, alice2, bob]) c.assertQuiet();
});

test('user destinations under /topic work too, and anonymous senders may address users', async (t) => {
  const alice = await connected(t, ctx.broker, { connectHeaders: ALICE });
  const anonymous = await connected(t, ctx.broker);
  const inbox = await alice.subscribe('/user/topic/alerts');
  await anonymous.publish({ destination: '/user/alice/topic/alerts', body: 'alert' });
  const m = await inbox.next();
  assert.equal(m.body, 'alert');
  assert.equal(m.headers.destination, '/user/topic/alerts');
  alice.assertQuiet();
  anonymous.assertQuiet();
});

test('an anonymous session cannot be addressed by its session id from outside', async (t) => {
  // User destinations of anonymous sessions are theirs alone (replies to the sender still
  // work, see app.test.js); /user/{session id}/... names a user of that name instead.
  const anon = await connected(t, ctx.broker);
  const other = await connected(t, ctx.broker);
  const session = anon.connects.items[0].headers.session;
  const inbox = await anon.subscribe('/user/queue/notes');
  await other.publish({ destination: `/user/${session}/queue/notes`, body: 'guess' });
  await other.publish({ destination: fresh('/topic/fence'), body: 'fence' });
  await anon.publish({ destination: fresh('/topic/fence'), body: 'fence' });
  assert.equal(inbox.items.length, 0);
  anon.assertQuiet();
  other.assertQuiet();
});

test("bob subscribing to /user/alice/queue/notes gets ERROR 'access denied' and is disconnected", async (t) => {
  const alice = await connected(t, ctx.broker, { connectHeaders: ALICE });
  const notes = await alice.subscribe('/user/queue/notes');
  const bob = new TestClient(ctx.broker, { connectHeaders: BOB });
  t.after(() => bob.close());
  await bob.connect();

  const spy = [];
  bob.client.subscribe('/user/alice/queue/notes', (m) => spy.push(m), { receipt: 'spy-1' });
  const err = await bob.errors.next();
  assert.equal(err.command, 'ERROR');
  assert.equal(err.headers.message, 'access denied');
  assert.equal(err.headers['receipt-id'], 'spy-1');
  await bob.closes.next();
  assert.equal(bob.client.connected, false);

  // Nothing leaked to bob before the close, and alice is unaffected.
  const sender = await connected(t, ctx.broker);
  await sender.publish({ destination: '/user/alice/queue/notes', body: 'private' });
  assert.equal((await notes.next()).body, 'private');
  assert.equal(spy.length, 0);
  assert.equal(bob.unhandled.filter((f) => f.command === 'MESSAGE').length, 0);
  alice.assertQuiet();
});
