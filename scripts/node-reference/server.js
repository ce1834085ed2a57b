#!/usr/bin/env node
/*
 * Node.js reference server (socketcluster-server 20, the official implementation) running the same
 * boilerplate app as our Rust server. Used for development (run the browser page / interop tests against the
 * real thing) and for side-by-side benchmarks.
 *
 *   node server.js [--port N] [--host ADDR] [--public DIR] [--protocol-version 1|2]
 *                  [--ping-interval MS] [--ping-timeout MS] [--auth-key KEY] [--verbose] [--test-procedures]
 *
 *   --port N               listen port (default: env PORT, else 8000; 0 = pick a free port)
 *   --host ADDR            bind address (default: all interfaces)
 *   --public DIR           static files served over plain HTTP (default: ../../public next to this script)
 *   --protocol-version V   SocketCluster protocol: 2 = "" heartbeats (default), 1 = "#1"/"#2" heartbeats
 *   --ping-interval MS     server ping interval (default 8000, the socketcluster-server default)
 *   --ping-timeout MS      server pong timeout and the pingTimeout announced in the handshake (default 30000)
 *   --auth-key KEY         authKey (HMAC secret) that signs and verifies auth tokens (default: random per start);
 *                          with the same key as ours, tokens work on both servers (sc-bench --auth-token)
 *   --verbose              log connections and server warnings to stderr
 *   --test-procedures      also register the test.* procedures below (used by tests/browser/client.test.mjs to
 *                          exercise auth, kick-out, server-initiated close and server->client invokes; off by
 *                          default so that the boilerplate stays identical to the Rust one for benchmarks)
 *
 * Prints "LISTENING <port>" on stdout once the HTTP server accepts connections.
 *
 * Boilerplate app (WebSocket path /socketcluster/):
 *   ping  (transmit or invoke) -> count += 1; exchange.transmitPublish('pong', count); invoke is answered with count
 *   echo  (invoke)             -> answered with the same data (a transmit is ignored)
 *   login (invoke) {username}  -> socket.setAuthToken({username}), then answered; a missing or empty username is an
 *                                 InvalidArgumentsError (as in the Rust boilerplate)
 *   whoami (invoke)            -> answered with the token's username; NotSignedInError when not signed in
 *
 * With --test-procedures (all invokes):
 *   test.login (payload)         -> socket.setAuthToken(payload); answers true
 *   test.logout                  -> socket.deauthenticate(); answers true
 *   test.whoami                  -> answers {authState, authToken} as the server sees them
 *   test.kickOut (channel)       -> socket.kickOut(channel, 'kicked by test'); answers true
 *   test.disconnect ({code, reason}) -> answers true, then socket.disconnect(code, reason)
 *   test.fail ({message, name, ...extra}) -> request.error(Error with those own fields)
 *   test.ask (data)              -> invokes 'question' on the client with data, answers {answer} or {error}
 *   test.publish ({channel, data}) -> exchange.transmitPublish(channel, data); answers true
 */
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const socketClusterServer = require('socketcluster-server');

// ------------------------------------------------------------------------------------------------ options

const USAGE = `usage: node server.js [--port N] [--host ADDR] [--public DIR] [--protocol-version 1|2]
                      [--ping-interval MS] [--ping-timeout MS] [--auth-key KEY] [--verbose] [--test-procedures]
(see the comment at the top of server.js for details)
`;

function parseArgs(argv) {
  const opts = {
    port: process.env.PORT != null && process.env.PORT !== '' ? Number(process.env.PORT) : 8000,
    host: undefined,
    publicDir: path.resolve(__dirname, '..', '..', 'public'),
    protocolVersion: 2,
    pingInterval: 8000,
    pingTimeout: 30000,
    authKey: undefined,
    verbose: false,
    testProcedures: false
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? arg.split(/=(.*)/s) : [arg, undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--port': opts.port = Number(value()); break;
      case '--host': opts.host = value(); break;
      case '--public': opts.publicDir = path.resolve(value()); break;
      case '--protocol-version': opts.protocolVersion = Number(value()); break;
      case '--ping-interval': opts.pingInterval = Number(value()); break;
      case '--ping-timeout': opts.pingTimeout = Number(value()); break;
      case '--auth-key': opts.authKey = value(); break;
      case '--verbose': opts.verbose = true; break;
      case '--test-procedures': opts.testProcedures = true; break;
      case '-h': case '--help':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        fail(`unknown argument: ${arg}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be an integer 0..65535');
  if (opts.protocolVersion !== 1 && opts.protocolVersion !== 2) fail('--protocol-version must be 1 or 2');
  if (!(opts.pingInterval > 0) || !(opts.pingTimeout > 0)) fail('--ping-interval/--ping-timeout must be > 0');
  return opts;
}

function fail(message) {
  process.stderr.write(`server.js: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const log = (...args) => { if (opts.verbose) console.error(...args); };

// ------------------------------------------------------------------------------------------------ static files

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8'
};

function serveStatic(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'Allow': 'GET, HEAD', 'Content-Type': 'text/plain' });
    res.end('Method Not Allowed');
    return;
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
  } catch (e) {
    res.writeHead(400, { 'Content-Type': 'text/plain' });
    res.end('Bad Request');
    return;
  }
  if (pathname.endsWith('/')) pathname += 'index.html';
  // Resolve inside publicDir only (no "..", no absolute escapes, no NUL bytes).
  const file = path.resolve(opts.publicDir, '.' + pathname);
  if (pathname.includes('\0') || (file !== opts.publicDir && !file.startsWith(opts.publicDir + path.sep))) {
    res.writeHead(403, { 'Content-Type': 'text/plain' });
    res.end('Forbidden');
    return;
  }
  fs.stat(file, (err, stat) => {
    if (err || !stat.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('Not Found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream',
      'Content-Length': stat.size,
      'Cache-Control': 'no-cache'
    });
    if (req.method === 'HEAD') { res.end(); return; }
    fs.createReadStream(file).pipe(res);
  });
}

// ------------------------------------------------------------------------------------------------ servers

const httpServer = http.createServer(serveStatic);
const agServer = socketClusterServer.attach(httpServer, {
  path: '/socketcluster/',
  protocolVersion: opts.protocolVersion,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  authKey: opts.authKey
});

/** Consume one async stream of the server or a socket without blocking the caller. */
function consume(stream, fn) {
  (async () => {
    for await (const item of stream) {
      try {
        await fn(item);
      } catch (err) {
        console.error('handler error:', err);
      }
    }
  })();
}

let count = 0;

function ping() {
  count += 1;
  agServer.exchange.transmitPublish('pong', count);
  return count;
}

consume(agServer.listener('error'), ({ error }) => console.error('server error:', error));
consume(agServer.listener('warning'), ({ warning }) => log('server warning:', warning && warning.message));

consume(agServer.listener('connection'), ({ socket }) => {
  log(`connection ${socket.id} from ${socket.remoteAddress}`);
  consume(socket.listener('disconnect'), ({ code, reason }) => log(`disconnect ${socket.id} ${code} ${reason || ''}`));

  // ping as a transmit (no cid) ...
  consume(socket.receiver('ping'), () => { ping(); });
  // ... and as an invoke (with cid): publish first, then acknowledge with the new count.
  consume(socket.procedure('ping'), (request) => { request.end(ping()); });

  consume(socket.procedure('echo'), (request) => { request.end(request.data); });

  consume(socket.procedure('login'), async (request) => {
    const username = request.data && request.data.username;
    if (typeof username !== 'string' || username.trim() === '') {
      const error = new Error('A non-empty username is required');
      error.name = 'InvalidArgumentsError';
      request.error(error);
      return;
    }
    await socket.setAuthToken({ username });
    request.end();
  });
  consume(socket.procedure('whoami'), (request) => {
    if (socket.authToken) {
      request.end(socket.authToken.username);
    } else {
      const error = new Error('This socket is not signed in');
      error.name = 'NotSignedInError';
      request.error(error);
    }
  });

  if (opts.testProcedures) registerTestProcedures(socket);
});

function registerTestProcedures(socket) {
  const procedures = {
    'test.login': async (data) => { await socket.setAuthToken(data); return true; },
    'test.logout': async () => { await socket.deauthenticate(); return true; },
    'test.whoami': () => ({ authState: socket.authState, authToken: socket.authToken }),
    'test.kickOut': (channel) => { socket.kickOut(channel, 'kicked by test'); return true; },
    'test.disconnect': (data) => { setTimeout(() => socket.disconnect(data.code, data.reason), 20); return true; },
    'test.fail': (data) => { throw Object.assign(new Error(data.message), data); },
    'test.ask': async (data) => {
      try {
        return { answer: await socket.invoke('question', data, { ackTimeout: 2000 }) };
      } catch (error) {
        return { error: { name: error.name, message: error.message } };
      }
    },
    'test.publish': (data) => { agServer.exchange.transmitPublish(data.channel, data.data); return true; }
  };
  for (const [name, fn] of Object.entries(procedures)) {
    consume(socket.procedure(name), async (request) => {
      let result;
      try {
        result = await fn(request.data);
      } catch (error) {
        request.error(error);
        return;
      }
      request.end(result);
    });
  }
}

function shutdown(signal) {
  log(`${signal}: shutting down`);
  agServer.close();
  httpServer.close(() => process.exit(0));
  // Open keep-alive connections must not delay the exit.
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

httpServer.on('error', (err) => {
  console.error('http server error:', err.message);
  process.exit(1);
});

httpServer.listen(opts.port, opts.host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
  log(`serving ${opts.publicDir}; protocol v${opts.protocolVersion}; ` +
    `pingInterval ${opts.pingInterval} ms, pingTimeout ${opts.pingTimeout} ms`);
});
