// A small HTTP backend for `forward` application routes, served by node:http on 127.0.0.1.
//
// Each path has a handler that turns the recorded request into an answer:
// `{ status = 200, json, text, delayMs = 0 }`. Every request is recorded (method, path, the
// parsed JSON body) in a Channel, so a test can wait for the broker's POST with a deadline.

import http from 'node:http';

import { Channel, within } from './client.js';

/** Most request bytes read; the broker's POSTs are small. */
const MAX_REQUEST = 1024 * 1024;

/**
 * Starts the backend on a free port.
 * @param {Record<string, (req: object) => object>} routes handler per request path
 */
export async function startBackend(routes) {
  const requests = new Channel('backend request');
  const timers = new Set();
  let closed = false;

  const answer = (res, rec, { status = 200, json, text, delayMs = 0 } = {}) => {
    const send = () => {
      timers.delete(timer);
      rec.answeredAt = Date.now();
      if (res.destroyed) return; // the broker gave up (timeout) and closed the connection
      const body = json !== undefined ? JSON.stringify(json) : (text ?? '');
      const headers = { 'content-length': Buffer.byteLength(body) };
      if (json !== undefined) headers['content-type'] = 'application/json';
      res.writeHead(status, headers).end(body);
    };
    let timer;
    if (delayMs > 0) {
      timer = setTimeout(send, delayMs);
      timers.add(timer);
    } else {
      send();
    }
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_REQUEST) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const rec = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        text,
        json,
        receivedAt: Date.now(),
        answeredAt: undefined,
      };
      requests.push(rec);
      const handler = routes[req.url];
      if (!handler || closed) {
        answer(res, rec, { status: 404, text: 'no such hook' });
        return;
      }
      let reply;
      try {
        reply = handler(rec);
      } catch (err) {
        reply = { status: 599, text: `handler threw: ${err.message}` };
      }
      answer(res, rec, reply);
    });
  });

  await within(
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    }),
    'the backend to listen',
  );
  const { port } = server.address();

  return {
    port,
    requests,
    /** http://127.0.0.1:PORT + path */
    url: (path) => `http://127.0.0.1:${port}${path}`,
    /** The requests received so far for `path`, optionally only those whose JSON matches. */
    received: (path, pred = () => true) =>
      requests.items.filter((r) => r.path === path && pred(r.json ?? {})),
    /** Stops answering, drops pending answers and connections, closes the listener. */
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await within(new Promise((resolve) => server.close(() => resolve())), 'the backend to close');
    },
  };
}
