// The control center, live: one reading a second from /api/live (server-sent events),
// turned into rates (a reading holds counters only) and drawn into the tables and charts
// the server rendered. Text from clients (their ids) only ever goes in as textContent.
(function () {
  'use strict';
  const HISTORY = 60; // points in a chart: a minute at one reading a second
  const params = new URLSearchParams(location.search);
  const limit = params.get('limit') || '100';
  const $ = (id) => document.getElementById(id);
  const live = $('live');
  const notice = $('notice');
  const search = $('q');
  search.value = params.get('q') || '';
  let source = null;
  let previous = null; // the last reading, for rates
  const history = { messages: [], bytes: [] };
  let readings = 0;

  function connect() {
    if (source) source.close();
    previous = null;
    const query = new URLSearchParams({ limit, q: search.value });
    source = new EventSource('api/live?' + query);
    source.onopen = () => { live.textContent = 'Live updates: connected'; };
    source.onerror = () => { live.textContent = 'Live updates: reconnecting...'; };
    source.onmessage = (event) => render(JSON.parse(event.data));
  }

  function perSecond(now, before, seconds) {
    if (before === undefined || seconds <= 0) return null;
    return Math.max(0, (now - before) / seconds);
  }

  function fmt(rate, unit) {
    if (rate === null || rate === undefined) return '-';
    if (unit === 'B') {
      if (rate >= 1048576) return (rate / 1048576).toFixed(1) + ' MiB/s';
      if (rate >= 1024) return (rate / 1024).toFixed(1) + ' KiB/s';
      return rate.toFixed(0) + ' B/s';
    }
    return rate.toFixed(rate < 10 ? 1 : 0) + '/s';
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function code(td, text, className) {
    const c = document.createElement('code');
    c.className = className;
    c.textContent = text;
    td.appendChild(c);
  }

  function clock(secs) {
    if (secs < 60) return secs + 's';
    if (secs < 3600) return Math.floor(secs / 60) + 'm ' + String(secs % 60).padStart(2, '0') + 's';
    return Math.floor(secs / 3600) + 'h ' + String(Math.floor(secs % 3600 / 60)).padStart(2, '0') + 'm';
  }

  function render(reading) {
    const seconds = previous ? (reading.at_ms - previous.at_ms) / 1000 : 0;
    const s = reading.summary;
    const set = (id, text) => { const el = $(id); if (el) el.textContent = text; };
    const readiness = $('readiness');
    readiness.textContent = s.readiness;
    readiness.className = s.readiness;
    set('socketio_connections', s.connections.socketio);
    set('quic_connections', s.connections.quic);
    set('pairs', s.pairs);
    set('open_streams', s.open_streams);
    set('messages', s.messages.in + ' / ' + s.messages.out);
    set('bytes', s.bytes.in + ' / ' + s.bytes.out);
    set('requests_failed', s.requests_failed);
    set('undelivered', s.undelivered);
    set('connects_refused', s.connects_refused);
    const mean = s.acks === 0 ? '-' : (s.ack_mean_micros / 1000).toFixed(1) + ' ms';
    set('acks', s.acks + ' (' + mean + ')');

    if (previous) {
      const p = previous.summary;
      const m = perSecond(s.messages.in + s.messages.out, p.messages.in + p.messages.out, seconds);
      const b = perSecond(s.bytes.in + s.bytes.out, p.bytes.in + p.bytes.out, seconds);
      push(history.messages, m);
      push(history.bytes, b);
      set('rate-messages', fmt(m));
      set('rate-bytes', fmt(b, 'B'));
      draw($('chart-messages'), history.messages);
      draw($('chart-bytes'), history.bytes);
    }

    const listed = reading.clients.clients;
    set('clients-count', reading.clients.total + ' connected' + (search.value
      ? '; ' + listed.length + ' matching "' + search.value + '"'
      : (listed.length ? '; showing ' + listed.length + ' from ' + listed[0].id : '')) + '.');
    const before = new Map();
    if (previous) for (const c of previous.clients.clients) before.set(c.id, c.traffic);
    const tbody = $('clients').tBodies[0];
    const rows = reading.clients.clients.map((c) => {
      const row = document.createElement('tr');
      row.className = 'client';
      code(cell(row, ''), c.id, 'id');
      cell(row, c.generation, 'transport');
      cell(row, c.remote || '', 'remote');
      cell(row, new Date(c.since_unix_ms).toUTCString() + ' (' + clock(c.connected_secs) + ')');
      const peer = cell(row, c.peer ? '' : '\u2013', 'peer-cell');
      if (c.peer) code(peer, c.peer, 'peer');
      cell(row, String(c.streams), 'n streams');
      cell(row, String(c.pending), 'n');
      const t = c.traffic;
      const b = before.get(c.id);
      cell(row, fmt(b && perSecond(t.messages_in, b.messages_in, seconds)) + ' / ' +
        fmt(b && perSecond(t.messages_out, b.messages_out, seconds)), 'n messages-rate');
      cell(row, fmt(b && perSecond(t.bytes_in, b.bytes_in, seconds), 'B') + ' / ' +
        fmt(b && perSecond(t.bytes_out, b.bytes_out, seconds), 'B'), 'n bytes-rate');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'disconnect';
      button.dataset.id = c.id;
      button.textContent = 'Disconnect';
      cell(row, '').appendChild(button);
      return row;
    });
    tbody.replaceChildren(...rows);

    const streamsBefore = new Map();
    if (previous) for (const st of previous.streams) streamsBefore.set(st.id, st);
    const streams = $('streams').tBodies[0];
    streams.replaceChildren(...reading.streams.map((st) => {
      const row = document.createElement('tr');
      row.className = 'stream';
      code(cell(row, ''), st.id, 'stream-id');
      cell(row, (st.a || '?') + ' \u2194 ' + (st.b || '?'), 'between');
      cell(row, clock(st.open_secs));
      cell(row, st.bytes_ab + ' / ' + st.bytes_ba, 'n stream-bytes');
      const b = streamsBefore.get(st.id);
      cell(row, fmt(b ? perSecond(st.bytes_ab, b.bytes_ab, seconds) : null, 'B') + ' / ' +
        fmt(b ? perSecond(st.bytes_ba, b.bytes_ba, seconds) : null, 'B'), 'n stream-rate');
      return row;
    }));

    previous = reading;
    readings += 1;
    document.body.dataset.readings = String(readings);
  }

  function push(points, value) {
    points.push(value === null ? 0 : value);
    if (points.length > HISTORY) points.shift();
  }

  function draw(canvas, points) {
    const g = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    g.clearRect(0, 0, w, h);
    const top = Math.max(1, ...points);
    g.strokeStyle = '#2a6';
    g.lineWidth = 2;
    g.beginPath();
    points.forEach((v, i) => {
      const x = (i / (HISTORY - 1)) * w;
      const y = h - 2 - (v / top) * (h - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }

  document.addEventListener('click', async (event) => {
    const button = event.target.closest('button.disconnect');
    if (!button) return;
    const id = button.dataset.id;
    if (!window.confirm('Disconnect client "' + id + '"? Its peer is freed.')) return;
    button.disabled = true;
    try {
      const response = await fetch('api/clients/' + encodeURIComponent(id) + '/disconnect', {
        method: 'POST',
        headers: { 'x-p2p-relay-admin': '1' },
      });
      const body = await response.json().catch(() => ({}));
      notice.textContent = response.ok ? 'Disconnected ' + id + '.' : (body.error || 'HTTP ' + response.status);
    } catch (e) {
      notice.textContent = 'Could not disconnect ' + id + ': ' + e.message;
    }
  });

  let typing = null;
  $('search').addEventListener('submit', (event) => { event.preventDefault(); connect(); });
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(connect, 250);
  });
  connect();
})();
