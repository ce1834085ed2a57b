// 13. Tokens across implementations: the Node reference fixture (socketcluster-server 20) and the Rust boilerplate
// run with the same --auth-key; a token issued by one must authenticate on the other (handshake isAuthenticated and
// whoami), in both directions and with both client versions, and both must refuse the same bad tokens with the same
// error objects, byte for byte (docs/protocol.md §8.2–8.4).
//
// Always runs against both servers, whatever SC_SERVER_CMD says; the Rust boilerplate binary must exist.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startBoilerplate, startNodeFixture, createClient, connectClient, rawConnect, withTimeout, TokenStore,
  VERSIONS
} from './lib/harness.mjs';
import {decodePayload} from './lib/jwt.mjs';
import {tokenCases} from './lib/tokens.mjs';

useHarness();

const AUTH_KEY = 'cross-implementation-key';

/** Signs in on `server` with a fresh client and returns the token it was given. */
async function tokenFrom(version, server, username) {
  let store = new TokenStore();
  let client = await connectClient(version, server, {authEngine: store});
  await withTimeout(client.invoke('login', {username}), 5000, 'login');
  await client.waitEvent('authenticate');
  assert.equal(store.token, client.signedAuthToken);
  await client.close();
  return store.token;
}

/** Connects to `server` with `token` stored, and checks that the handshake authenticated it as `username`. */
async function assertAccepted(version, server, token, username) {
  let store = new TokenStore(token);
  let client = createClient(version, server, {authEngine: store});
  let status = await client.ready();
  assert.equal(status.isAuthenticated, true, `handshake with ${token}`);
  assert.equal(status.authError, undefined);
  assert.equal(client.authState, 'authenticated');
  assert.equal(await withTimeout(client.invoke('whoami'), 5000, 'whoami'), username);
  assert.equal(store.token, token, 'the token is kept');
  // #authenticate with the same token on an anonymous connection works too.
  let anonymous = await connectClient(version, server, {authEngine: new TokenStore()});
  assert.deepEqual(await anonymous.authenticate(token), {isAuthenticated: true, authError: null});
  assert.equal(await withTimeout(anonymous.invoke('whoami'), 5000, 'whoami'), username);
}

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}: Node reference ↔ Rust boilerplate`, () => {
    let node;
    let rust;
    before(async () => {
      [node, rust] = await Promise.all([
        startNodeFixture({'protocol-version': V.protocol, 'auth-key': AUTH_KEY, 'codec': V.codec}, {keep: true}),
        startBoilerplate({'protocol-version': V.protocol, 'auth-key': AUTH_KEY}, {keep: true})
      ]);
    });

    test('a token from the Node server authenticates on the Rust server', {timeout: 15000}, async () => {
      let token = await tokenFrom(V, node, 'from-node');
      await assertAccepted(V, rust, token, 'from-node');
    });

    test('a token from the Rust server authenticates on the Node server', {timeout: 15000}, async () => {
      let token = await tokenFrom(V, rust, 'from-rust');
      await assertAccepted(V, node, token, 'from-rust');
    });

    test('both servers issue tokens of the same shape: header bytes, claim order, default expiry', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([tokenFrom(V, node, 'same'), tokenFrom(V, rust, 'same')]);
      assert.equal(a.split('.')[0], b.split('.')[0], 'identical header segment');
      let [pa, pb] = [decodePayload(a), decodePayload(b)];
      assert.deepEqual(Object.keys(pa), Object.keys(pb));
      assert.equal(pa.exp - pa.iat, pb.exp - pb.iat);
    });
  });
}

describe('the same tokens refused the same way (raw, protocol v2)', () => {
  let node;
  let rust;
  before(async () => {
    [node, rust] = await Promise.all([
      startNodeFixture({'protocol-version': '2', 'auth-key': AUTH_KEY}, {keep: true}),
      startBoilerplate({'protocol-version': '2', 'auth-key': AUTH_KEY}, {keep: true})
    ]);
  });

  /** Handshake with `token` and `#authenticate` it; returns the frames without the socket id. */
  async function outcome(server, token) {
    let raw = await rawConnect(server, {pong: 'any'});
    raw.send(JSON.stringify({event: '#handshake', data: {authToken: token}, cid: 1}));
    let {value} = await raw.waitJson((v) => v.rid === 1);
    let frames = [JSON.stringify(value.data.authError ?? null), String(value.data.isAuthenticated)];
    raw.send(JSON.stringify({event: '#authenticate', data: token, cid: 2}));
    frames.push(await raw.waitFrame((f) => f.startsWith('{"rid":2')));
    raw.send('{"event":"whoami","cid":3}');
    frames.push(await raw.waitFrame((f) => f.startsWith('{"rid":3')));
    // #removeAuthToken frames (one per bad token use) arrive in between; count them.
    frames.push(raw.frames.drain().filter((f) => f === '{"event":"#removeAuthToken"}').length);
    await raw.close();
    return frames;
  }

  for (const testCase of tokenCases(AUTH_KEY)) {
    test(`${testCase.name}: identical authError, #authenticate answer and whoami`, {timeout: 15000}, async () => {
      let [fromNode, fromRust] = await Promise.all([outcome(node, testCase.token), outcome(rust, testCase.token)]);
      assert.deepEqual(fromRust, fromNode);
    });
  }
});
