// Boilerplate worker logic for SocketCluster 14: `echo` answers with its data, `ping` publishes
// a count to `pong`. Client publish is allowed (the default).
'use strict';
const SCWorker = require('socketcluster/scworker');

class Worker extends SCWorker {
  run() {
    const scServer = this.scServer;
    let count = 0;
    scServer.on('connection', (socket) => {
      socket.on('echo', (data, res) => res(null, data));
      socket.on('ping', (data, res) => {
        count++;
        scServer.exchange.publish('pong', count);
        if (res) res(null);
      });
    });
  }
}

new Worker();
