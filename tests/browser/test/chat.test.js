// The chat example in a real browser: two pages join one room, chat, get their own welcome,
// and keep chatting after the broker restarts. Chromium is Debian's (/usr/bin/chromium),
// driven by playwright-core; nothing is downloaded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const exampleBin = process.env.STOMPBOX_CHAT_BIN || path.join(root, 'target/debug/examples/chat');
const webDir = path.join(root, 'examples/chat/web');
const artifacts = path.join(root, 'test-artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 10_000;

let port;
let configPath;
let broker;
let browser;
let stderr = '';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHealthy() {
  const deadline = Date.now() + WAIT;
  for (let i = 0; i < 400 && Date.now() < deadline; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('chat example did not become healthy\n' + stderr);
}

async function startBroker() {
  broker = spawn(exampleBin, [], {
    env: { ...process.env, STOMPBOX_CHAT_CONFIG: configPath, RUST_LOG: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  broker.stderr.on('data', (d) => { stderr += d.toString(); });
  await waitHealthy();
}

async function stopBroker() {
  if (!broker || broker.exitCode !== null) return;
  const exited = new Promise((r) => broker.once('exit', r));
  broker.kill('SIGINT');
  const timer = setTimeout(() => broker.kill('SIGKILL'), WAIT);
  await exited;
  clearTimeout(timer);
}

before(async () => {
  assert.ok(existsSync(exampleBin), `missing ${exampleBin}: run cargo build --example chat`);
  assert.ok(existsSync(path.join(webDir, 'node_modules/@stomp/stompjs')), 'run npm ci in examples/chat/web');
  assert.ok(existsSync(chromiumPath), `missing ${chromiumPath}: apt-get install chromium`);
  port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'stompbox-chat-'));
  configPath = path.join(dir, 'broker.toml');
  writeFileSync(configPath, [
    '[server]', `websocket = "127.0.0.1:${port}"`, 'shutdown_grace_ms = 2000',
    '[http]', `static_dir = ${JSON.stringify(webDir)}`,
    '[stomp]', 'heartbeat = [2000, 2000]',
  ].join('\n'));
  await startBroker();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // playwright gives every launch a fresh, empty --user-data-dir of its own.
  });
});

after(async () => {
  if (browser) await browser.close();
  await stopBroker();
});

async function join(nick, room, query = '') {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(`http://127.0.0.1:${port}/${query}`);
  await page.fill('#nick', nick);
  await page.selectOption('#room', room);
  await page.click('#join button');
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForFunction(() => document.getElementById('welcome').textContent.length > 0);
  return page;
}

async function say(page, text) {
  await page.waitForSelector('#text:not([disabled])');
  await page.fill('#text', text);
  await page.click('#send button');
}

function lines(page) {
  return page.$$eval('#messages li', (els) => els.map((e) => e.textContent));
}

async function waitForLine(page, fragment) {
  await page.waitForFunction(
    (f) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(f)),
    fragment,
  );
}

test('two pages chat, each gets only its own welcome, and both survive a broker restart', async () => {
  const alice = await join('alice', 'lobby');
  const bob = await join('bob', 'lobby');

  assert.equal(await alice.textContent('#welcome'), 'Welcome to #lobby, alice!');
  assert.equal(await bob.textContent('#welcome'), 'Welcome to #lobby, bob!');
  await waitForLine(alice, 'bob joined #lobby');

  await say(alice, 'hello from alice');
  await waitForLine(bob, 'hello from alice');
  await say(bob, 'hi alice');
  await waitForLine(alice, 'hi alice');

  // The broker goes away: both pages show that they are reconnecting.
  await stopBroker();
  await alice.waitForSelector('#status[data-state="reconnecting"]');
  await bob.waitForSelector('#status[data-state="reconnecting"]');

  await startBroker();
  await alice.waitForSelector('#status[data-state="connected"]');
  await bob.waitForSelector('#status[data-state="connected"]');
  await say(bob, 'back again');
  await waitForLine(alice, 'back again');
  await say(alice, 'welcome back');
  await waitForLine(bob, 'welcome back');

  assert.ok((await lines(alice)).some((l) => l.includes('bob') && l.includes('back again')));
  mkdirSync(artifacts, { recursive: true });
  await alice.screenshot({ path: path.join(artifacts, 'chat.png'), fullPage: true });
});

test('a message sent while a page was offline arrives when it reconnects', async () => {
  const gina = await join('gina', 'random');
  const hugo = await join('hugo', 'random');
  await waitForLine(gina, 'hugo joined #random');
  await say(gina, 'before the tunnel');
  await waitForLine(hugo, 'before the tunnel');

  // Hugo's train enters a tunnel.
  await hugo.evaluate(() => window.chatDebug.goOffline());
  await hugo.waitForSelector('#status[data-state="reconnecting"]');
  await say(gina, 'said while you were away');
  // Out of the tunnel: the page resumes from the last message it saw.
  await hugo.evaluate(() => window.chatDebug.goOnline());
  await hugo.waitForSelector('#status[data-state="connected"]');
  await waitForLine(hugo, 'said while you were away');
  const seen = (await lines(hugo)).filter((l) => l.includes('before the tunnel'));
  assert.equal(seen.length, 1, 'nothing twice');
  mkdirSync(artifacts, { recursive: true });
  await hugo.screenshot({ path: path.join(artifacts, 'chat-resume.png'), fullPage: true });
  await gina.close();
  await hugo.close();
});

test('a page on SockJS (xhr-streaming) chats with a page on WebSocket', async () => {
  const carol = await join('carol', 'rust', '?sockjs=xhr-streaming');
  const dave = await join('dave', 'rust');
  // The SockJS page really runs on the transport it asked for.
  assert.equal(await carol.getAttribute('body', 'data-transport'), 'xhr-streaming');
  assert.equal(await carol.textContent('#welcome'), 'Welcome to #rust, carol!');
  await waitForLine(carol, 'dave joined #rust');
  await say(carol, 'streaming over http');
  await waitForLine(dave, 'streaming over http');
  await say(dave, 'websocket here');
  await waitForLine(carol, 'websocket here');
  await carol.close();
  await dave.close();
});
