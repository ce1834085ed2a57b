// SocketCluster 14 master (workers + brokers) with the boilerplate worker logic, for
// scripts/bench-cluster. Usage: node server.js [--port P] [--workers W] [--brokers B]
// Prints `LISTENING <port>` once every worker serves (the master's 'ready' event).
'use strict';
const SocketCluster = require('socketcluster');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
};
const port = arg('port', Number(process.env.PORT) || 8000);

const socketCluster = new SocketCluster({
  workers: arg('workers', 2),
  brokers: arg('brokers', 1),
  port,
  workerController: __dirname + '/worker.js',
  environment: 'prod',
  logLevel: 1,
});
socketCluster.on('ready', () => console.log(`LISTENING ${port}`));
