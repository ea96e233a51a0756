// Starts and stops the real `stompbox` binary for a test file.
//
// Each test file gets its own broker on a free 127.0.0.1 port with a generated config.
// The broker's output is kept in memory and printed when a test fails.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, '..');
const repoDir = path.resolve(packageDir, '..', '..');

/** How long the broker may take to answer /healthz after it is spawned. */
const READY_DEADLINE_MS = 10_000;
/** Beyond shutdown_grace_ms: how long SIGTERM may take before SIGKILL. */
const EXIT_SLACK_MS = 3_000;
/** Most bytes of broker output kept for failure reports. */
const LOG_LIMIT = 256 * 1024;
/** Attempts at finding a free port and starting on it (another process may take the port). */
const START_ATTEMPTS = 3;

/** Path of the stompbox binary: $STOMPBOX_BIN, else the repo's debug build. */
export function brokerBinary() {
  const bin = process.env.STOMPBOX_BIN
    ? path.resolve(process.env.STOMPBOX_BIN)
    : path.join(repoDir, 'target', 'debug', 'stompbox');
  if (!existsSync(bin)) {
    throw new Error(
      `stompbox binary not found at ${bin}.\n` +
        `Build it first: (cd ${repoDir} && cargo build --bin stompbox), ` +
        `or point STOMPBOX_BIN at a stompbox binary.`,
    );
  }
  return bin;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** How long `stompbox hash-password` may take (argon2 in a debug build: a fraction of a second). */
const HASH_DEADLINE_MS = 10_000;

/**
 * The argon2 hash of `password` for `[[auth.users]] password_hash`, from the binary's
 * `hash-password` subcommand (password on stdin, hash on stdout).
 */
export function hashPassword(password) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      brokerBinary(),
      ['hash-password'],
      { timeout: HASH_DEADLINE_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`stompbox hash-password failed: ${err.message}\n${stderr}`));
          return;
        }
        const hash = stdout.trim();
        if (!hash.startsWith('$argon2')) {
          reject(new Error(`stompbox hash-password printed ${JSON.stringify(stdout)}`));
          return;
        }
        resolve(hash);
      },
    );
    child.stdin.end(`${password}\n`);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A JavaScript string, number, boolean or array of them as a TOML value. */
export function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`cannot write ${typeof v} as TOML`);
}

function tomlTable(obj) {
  return Object.entries(obj)
    .map(([k, v]) => `${k} = ${tomlValue(v)}\n`)
    .join('');
}

/**
 * The TOML text for a config: `settings` maps section names to key/value objects
 * (e.g. { stomp: { heartbeat: [200, 200] } }); `destinations` is the [[destinations]] list.
 */
export function configToml(settings, destinations = []) {
  let out = '';
  for (const [section, table] of Object.entries(settings)) {
    out += `[${section}]\n${tomlTable(table)}\n`;
  }
  for (const d of destinations) {
    out += `[[destinations]]\n${tomlTable(d)}\n`;
  }
  return out;
}

export class Broker {
  /**
   * @param {object} [options]
   * @param {object} [options.config] extra config sections, merged over the test defaults,
   *   e.g. { stomp: { max_frame_size: 2097152 } }
   * @param {object[]} [options.destinations] [[destinations]] entries
   * @param {string | ((broker: Broker) => string)} [options.toml] TOML text appended after the
   *   generated sections, for what `config` cannot express (`[[app.routes]]`, `[[auth.users]]`,
   *   `[auth.jwt]`). A function is called with the broker each time the config is written,
   *   so it can put files (a JWT secret) into `broker.dir`. It must not repeat a section the
   *   generated part has (`[server]` always, and every key of `config`).
   */
  constructor({ config = {}, destinations = [], toml = '' } = {}) {
    this.bin = brokerBinary();
    this.config = config;
    this.destinations = destinations;
    this.toml = toml;
    this.port = undefined;
    this.proc = undefined;
    this.exited = undefined; // promise of { code, signal } for the running process
    this.log = ''; // the last LOG_LIMIT characters of output
    this.logTotal = 0; // characters of output ever appended
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'stompbox-stompjs-'));
    this.configPath = path.join(this.dir, 'broker.toml');
  }

  /** ws://127.0.0.1:PORT/ws */
  get url() {
    return `ws://127.0.0.1:${this.port}${this.wsPath}`;
  }

  /** http://127.0.0.1:PORT */
  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsPath() {
    return this.config.server?.websocket_path ?? '/ws';
  }

  get shutdownGraceMs() {
    return this.config.server?.shutdown_grace_ms ?? 2000;
  }

  get running() {
    return this.proc !== undefined;
  }

  _writeConfig() {
    const settings = {
      ...this.config,
      server: {
        shutdown_grace_ms: 2000,
        ...this.config.server,
        websocket: `127.0.0.1:${this.port}`,
      },
    };
    const extra = typeof this.toml === 'function' ? this.toml(this) : this.toml;
    let text = configToml(settings, this.destinations);
    if (extra) text += `${extra.trimEnd()}\n`;
    writeFileSync(this.configPath, text);
  }

  _append(chunk) {
    const text = chunk.toString();
    this.log += text;
    this.logTotal += text.length;
    if (this.log.length > LOG_LIMIT) this.log = this.log.slice(-LOG_LIMIT);
  }

  /** A mark for logSince(). */
  logMark() {
    return this.logTotal;
  }

  /** The output appended since `mark` (as much of it as is still kept). */
  logSince(mark) {
    const n = this.logTotal - mark;
    return n >= this.log.length ? this.log : this.log.slice(this.log.length - n);
  }

  /**
   * Starts the broker and waits until /healthz answers. The first start picks a free port;
   * later starts (after stop()) reuse it, so clients can reconnect to the same URL.
   */
  async start() {
    if (this.running) throw new Error('broker already running');
    if (this.port !== undefined) {
      await this._startOn(this.port);
      return this;
    }
    let lastError;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      this.port = await freePort();
      try {
        await this._startOn(this.port);
        return this;
      } catch (err) {
        lastError = err;
        // Only a broker that exited (e.g. the port was taken meanwhile) is worth a retry.
        if (this.running) await this.stop();
      }
    }
    this.port = undefined;
    throw lastError;
  }

  async _startOn(port) {
    this.port = port;
    this._writeConfig();
    this._append(`\n--- starting ${this.bin} on port ${port}\n`);
    const proc = spawn(this.bin, ['--config', this.configPath, '-v'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    this.proc = proc;
    // Never leave a broker behind, even when the test process ends abruptly.
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    proc.on('exit', () => process.removeListener('exit', reap));
    proc.stdout.on('data', (c) => this._append(c));
    proc.stderr.on('data', (c) => this._append(c));
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this._append(`--- broker exited: code=${code} signal=${signal}\n`);
        if (this.proc === proc) this.proc = undefined;
        resolve({ code, signal });
      });
    });
    proc.on('error', (err) => this._append(`--- spawn error: ${err.message}\n`));
    await this._waitReady(proc);
  }

  async _waitReady(proc) {
    const deadline = Date.now() + READY_DEADLINE_MS;
    let lastProblem = 'no answer yet';
    for (let i = 0; Date.now() < deadline; i++) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`stompbox exited before becoming ready:\n${this.log}`);
      }
      try {
        const res = await fetch(`${this.httpUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
        const body = await res.text();
        if (res.status === 200 && body.trim() === 'ok') return;
        lastProblem = `/healthz answered ${res.status} ${JSON.stringify(body)}`;
      } catch (err) {
        lastProblem = err.cause?.code ?? err.message;
      }
      await sleep(Math.min(10 * 2 ** i, 100));
    }
    throw new Error(
      `stompbox not ready within ${READY_DEADLINE_MS} ms (${lastProblem}):\n${this.log}`,
    );
  }

  /**
   * Sends SIGTERM and waits for the process to exit; SIGKILL if it takes longer than the
   * shutdown grace plus some slack. Returns { code, signal, killed }.
   */
  async stop() {
    const proc = this.proc;
    if (!proc) return undefined;
    const exited = this.exited;
    proc.kill('SIGTERM');
    const limit = this.shutdownGraceMs + EXIT_SLACK_MS;
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), limit);
    });
    const first = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (first !== 'timeout') return { ...first, killed: false };
    this._append(`--- no exit ${limit} ms after SIGTERM: SIGKILL\n`);
    proc.kill('SIGKILL');
    return { ...(await exited), killed: true };
  }

  /** stop() then start() on the same port. */
  async restart() {
    const result = await this.stop();
    await this.start();
    return result;
  }

  /** Stops the broker and removes its temp directory. */
  async dispose() {
    try {
      await this.stop();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** Starts a broker with the given options (see Broker). */
export async function startBroker(options) {
  const broker = new Broker(options);
  try {
    await broker.start();
  } catch (err) {
    rmSync(broker.dir, { recursive: true, force: true });
    throw err;
  }
  return broker;
}

/**
 * For a test file: starts one broker before its tests, stops it after them, and prints the
 * broker's output when a test fails. Returns an object whose `.broker` is set once started.
 * `options` are Broker's, or a function (may be async) returning them, called in the `before`
 * hook: for options that need work at test start (password hashes, a backend's port).
 */
export function useBroker(options) {
  const handle = { broker: undefined };
  let mark = 0;
  before(async () => {
    const resolved = typeof options === 'function' ? await options() : options;
    handle.broker = await startBroker(resolved);
  });
  beforeEach(() => {
    mark = handle.broker?.logMark() ?? 0;
  });
  afterEach(async (t) => {
    if (t.passed === false && handle.broker) {
      // Lets the broker's last lines (e.g. why it closed a session) come through the pipe.
      await sleep(200);
      process.stderr.write(
        `\n===== stompbox output during "${t.name}" (failed) =====\n` +
          `${handle.broker.logSince(mark)}\n===== end of stompbox output =====\n`,
      );
    }
  });
  after(async () => {
    await handle.broker?.dispose();
  });
  return handle;
}
