'use strict';
// A tiny static file server for the browser tests: the pages come from ANOTHER origin than
// the relay (its own free loopback port), so every Socket.IO request is cross-origin.
//
//   /pages/...          tests/interop/browser/pages
//   /js-client/...      js-client (the browser ES module)
//   /vendor/sio2/...    socket.io-client 2.x's dist/ (npm package socket.io-client-v2)
//   /vendor/sio4/...    socket.io-client 4.x's dist/
// Nothing else: no directory listings, no paths outside these folders.

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const INTEROP = path.resolve(__dirname, '..', '..');
const REPO_ROOT = path.resolve(INTEROP, '..', '..');

const ROOTS = {
  '/pages/': path.join(INTEROP, 'browser', 'pages'),
  '/js-client/': path.join(REPO_ROOT, 'js-client'),
  '/vendor/sio2/': path.join(INTEROP, 'node_modules', 'socket.io-client-v2', 'dist'),
  '/vendor/sio4/': path.join(INTEROP, 'node_modules', 'socket.io-client', 'dist'),
};

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
};

function resolve(urlPath) {
  for (const [prefix, dir] of Object.entries(ROOTS)) {
    if (!urlPath.startsWith(prefix)) continue;
    const file = path.resolve(dir, '.' + path.posix.normalize('/' + urlPath.slice(prefix.length)));
    if (file !== dir && file.startsWith(dir + path.sep)) return file;
  }
  return null;
}

/**
 * Start the server; resolves to {origin, close()}. `extra` maps more URL paths to contents
 * (e.g. a bundle built by the test).
 */
function startStatic({ extra = {} } = {}) {
  const server = http.createServer((req, res) => {
    let urlPath;
    try {
      urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch (_) {
      res.writeHead(400).end();
      return;
    }
    if (urlPath === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (Object.prototype.hasOwnProperty.call(extra, urlPath)) {
      res.writeHead(200, { 'content-type': TYPES[path.extname(urlPath)] || 'text/plain', 'cache-control': 'no-store' });
      res.end(extra[urlPath]);
      return;
    }
    const file = resolve(urlPath);
    fs.readFile(file || '', (err, data) => {
      if (err || !file) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}`);
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': 'no-store',
      });
      res.end(data);
    });
  });
  return new Promise((resolveStart, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolveStart({
        origin: `http://127.0.0.1:${port}`,
        close: () => new Promise((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
      });
    });
  });
}

module.exports = { startStatic, REPO_ROOT };
