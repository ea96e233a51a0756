// stompbox-resume: subscriptions that pick up where they left off after a reconnect.
//
// Stompbox keeps a history for destinations configured with `history = N`, and a SUBSCRIBE
// with `resume-from: <last message-id seen>` first gets every message published since, then
// the live stream. This helper remembers the last message id per destination and adds the
// header whenever stomp.js subscribes again (in onConnect, after a reconnect).
//
//   const resume = StompboxResume.create({ onGap: (dest) => reloadState(dest) });
//   client.onConnect = () => {
//     resume.subscribe(client, '/topic/chat/lobby', (message) => show(message));
//   };
//
// When the broker no longer has the position (the client was away longer than the history
// reaches), the first message carries `resume-gap: true` and `onGap(destination, message)`
// is called before the message is handed on: the app should reload what it shows.
//
// Works in browsers (a global `StompboxResume`) and in Node (`require` or `import`).
// Positions live in memory; pass `storage` (e.g. `sessionStorage`) to keep them across page
// reloads.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory();
  } else {
    root.StompboxResume = factory();
  }
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const KEY_PREFIX = 'stompbox-resume:';

  function create(options) {
    const opts = options || {};
    const storage = opts.storage || null;
    const onGap = opts.onGap || function () {};
    const positions = new Map();

    function last(destination) {
      if (positions.has(destination)) return positions.get(destination);
      if (storage) {
        const saved = storage.getItem(KEY_PREFIX + destination);
        if (saved) return saved;
      }
      return undefined;
    }

    function remember(destination, id) {
      positions.set(destination, id);
      if (storage) storage.setItem(KEY_PREFIX + destination, id);
    }

    // Subscribes `client` (a connected @stomp/stompjs Client) to `destination`, resuming from
    // the last message seen there, if any. Returns stomp.js's subscription.
    function subscribe(client, destination, callback, headers) {
      const h = Object.assign({}, headers || {});
      const from = last(destination);
      if (from) h['resume-from'] = from;
      return client.subscribe(destination, function (message) {
        if (message.headers['resume-gap'] === 'true') onGap(destination, message);
        const id = message.headers['message-id'];
        if (id) remember(destination, id);
        callback(message);
      }, h);
    }

    // Forgets the position of one destination (or all): the next subscribe starts live.
    function forget(destination) {
      if (destination === undefined) {
        for (const d of positions.keys()) forget(d);
        return;
      }
      positions.delete(destination);
      if (storage) storage.removeItem(KEY_PREFIX + destination);
    }

    return { subscribe, forget, position: last };
  }

  return { create };
}));
