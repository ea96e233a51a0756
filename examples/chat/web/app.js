// The chat page: @stomp/stompjs over WebSocket to the Stompbox chat example.
// SEND /app/join/{room} and /app/chat/{room}; SUBSCRIBE /topic/chat/{room} and the personal
// /user/queue/welcome. stompjs reconnects on its own; the badge shows the connection state.
// `?sockjs` connects through SockJS instead, as a Spring `withSockJS()` front end does
// (`?sockjs=xhr-streaming` and the like pin one SockJS transport).
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  let client = null;
  // Remembers the last message seen in the room, so a reconnect resumes from there.
  const resume = StompboxResume.create({
    onGap: () => addLine('some messages were missed while offline', 'notice'),
  });
  let me = null; // { nick, room }
  let everConnected = false;

  function setStatus(state) {
    statusEl.textContent = state;
    statusEl.className = 'status ' + state;
    statusEl.dataset.state = state;
  }

  function addLine(html, cls) {
    const li = document.createElement('li');
    if (cls) li.className = cls;
    li.innerHTML = html;
    const list = $('messages');
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function onRoomMessage(frame) {
    const m = JSON.parse(frame.body);
    const at = new Date(m.at || Date.now()).toLocaleTimeString();
    if (m.type === 'join') {
      addLine(esc(m.nick) + ' joined #' + esc(m.room), 'notice');
    } else {
      addLine('<time>' + esc(at) + '</time><span class="nick">' + esc(m.nick) + '</span>' + esc(m.text), 'message');
    }
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    const sockjs = new URLSearchParams(location.search).get('sockjs');
    const options = {
      reconnectDelay: 1000,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
    };
    if (sockjs === null) {
      options.brokerURL = url;
    } else {
      const transports = sockjs ? { transports: [sockjs] } : {};
      options.webSocketFactory = () => {
        const sock = new SockJS(location.origin + '/ws', null, transports);
        sock.addEventListener('open', () => { document.body.dataset.transport = sock.transport; });
        return sock;
      };
    }
    client = new StompJs.Client(options);
    client.onConnect = () => {
      everConnected = true;
      setStatus('connected');
      resume.subscribe(client, '/topic/chat/' + me.room, onRoomMessage);
      client.subscribe('/user/queue/welcome', (frame) => {
        $('welcome').textContent = JSON.parse(frame.body).text;
      });
      client.subscribe('/user/queue/errors', (frame) => addLine('error: ' + esc(frame.headers.message || frame.body), 'notice'));
      client.publish({ destination: '/app/join/' + me.room, body: JSON.stringify({ nick: me.nick }) });
      $('text').disabled = false;
    };
    client.onWebSocketClose = () => {
      $('text').disabled = true;
      setStatus(everConnected ? 'reconnecting' : 'connecting');
    };
    client.onStompError = (frame) => addLine('broker error: ' + esc(frame.headers.message), 'notice');
    setStatus('connecting');
    client.activate();
  }

  // For tests and demos: drop the connection and come back, as a phone changing networks.
  window.chatDebug = {
    goOffline: () => client && client.deactivate(),
    goOnline: () => client && client.activate(),
  };

  $('join').addEventListener('submit', (e) => {
    e.preventDefault();
    me = { nick: $('nick').value.trim() || 'anonymous', room: $('room').value };
    $('join').hidden = true;
    $('chat').hidden = false;
    document.title = '#' + me.room + ' · ' + me.nick;
    connect();
  });

  $('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text || !client || !client.connected) return;
    client.publish({ destination: '/app/chat/' + me.room, body: JSON.stringify({ nick: me.nick, text }) });
    $('text').value = '';
  });
}());
