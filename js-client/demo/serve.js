#!/usr/bin/env node
'use strict';
// Serves the demo page: a tiny static server (node's http, no dependencies), offline.
//
//   cd js-client/demo && npm ci && node serve.js [--port 8800] [--host 127.0.0.1]
//                                                [--relay http://127.0.0.1:9000]
//
// Prints `demo at http://HOST:PORT/ (relay URL)` once listening (port 0 picks a free port).
// The page is served from its own origin, so it reaches the relay cross-origin, as a real
// web app would: start the relay with `cargo run --release` (any origin may connect), or
// `--cors-origins http://127.0.0.1:8800` to admit this page only.
//
//   /                          index.html, demo.mjs, style.css
//   /config.json               {"relay": URL}: the page's default relay
//   /js-client/browser.mjs     the plugin (../browser.mjs)
//   /js-client/src/core.mjs    its logic (../src/core.mjs, which browser.mjs imports)
//   /vendor/socket.io-client/  socket.io-client 4.x's dist/
//   /vendor/noble-hashes/      @noble/hashes (SHA-256 of files as they stream)

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

function parseArgs(argv) {
  const opts = { port: 8800, host: '127.0.0.1', relay: 'http://127.0.0.1:9000' };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '--port') opts.port = Number(value());
    else if (flag === '--host') opts.host = value();
    else if (flag === '--relay') opts.relay = value();
    else if (flag === '--help' || flag === '-h') {
      console.log('usage: node serve.js [--port 8800] [--host 127.0.0.1] [--relay http://127.0.0.1:9000]');
      process.exit(0);
    } else {
      console.error(`unknown argument ${argv[i]} (see --help)`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    console.error('--port must be 0..65535');
    process.exit(2);
  }
  return opts;
}

const HERE = __dirname;
const MODULES = path.join(HERE, 'node_modules');
const ROOTS = [
  ['/vendor/socket.io-client/', path.join(MODULES, 'socket.io-client', 'dist')],
  ['/vendor/noble-hashes/', path.join(MODULES, '@noble', 'hashes')],
];
const FILES = {
  '/': path.join(HERE, 'index.html'),
  '/index.html': path.join(HERE, 'index.html'),
  '/demo.mjs': path.join(HERE, 'demo.mjs'),
  '/style.css': path.join(HERE, 'style.css'),
  '/js-client/browser.mjs': path.join(HERE, '..', 'browser.mjs'),
  '/js-client/src/core.mjs': path.join(HERE, '..', 'src', 'core.mjs'),
};
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
};

/** The file for a URL path, or null: only the files above and inside the vendor folders. */
function fileFor(urlPath) {
  if (FILES[urlPath]) return FILES[urlPath];
  for (const [prefix, dir] of ROOTS) {
    if (!urlPath.startsWith(prefix)) continue;
    const file = path.resolve(dir, '.' + path.posix.normalize('/' + urlPath.slice(prefix.length)));
    if (file.startsWith(dir + path.sep) && /\.(m?js|map)$/.test(file)) return file;
  }
  return null;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  for (const [, dir] of ROOTS) {
    if (!fs.existsSync(dir)) {
      console.error(`${dir} is missing: run \`npm ci\` in ${HERE} first`);
      process.exit(1);
    }
  }
  const config = JSON.stringify({ relay: opts.relay });
  const server = http.createServer((req, res) => {
    let urlPath;
    try {
      urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch (_) {
      res.writeHead(400).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (urlPath === '/config.json') {
      res.writeHead(200, { 'content-type': TYPES['.json'], 'cache-control': 'no-store' }).end(config);
      return;
    }
    if (urlPath === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = fileFor(urlPath);
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}\n`);
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}\n`);
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  });
  server.on('error', (err) => {
    console.error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const { port } = server.address();
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    console.log(`demo at http://${host}:${port}/ (relay ${opts.relay})`);
  });
  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main();
