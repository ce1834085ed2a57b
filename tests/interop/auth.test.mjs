// 12. Authentication (JWT) with the official clients and a raw client against the Rust BOILERPLATE app
// (`socketcluster`, see SC_BOILERPLATE_CMD in the README): login / loginShort / whoami, private/<username> channels,
// readonly/* channels and announce, token expiry while connected, reconnect with a stored token, bad stored tokens,
// #authenticate outcomes (docs/protocol.md §8; TV-9, TV-12..TV-15, TV-20..TV-23).
//
// These tests always run against the Rust boilerplate binary, whatever SC_SERVER_CMD says (the Node fixture has no
// boilerplate tour); a missing binary is a failure, not a skip.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startBoilerplate, createClient, connectClient, rawConnect, expectRejection, uniqueName, sleep,
  errorObject, withTimeout, TokenStore, VERSIONS
} from './lib/harness.mjs';
import {userToken, decodePayload, decodeHeader, signToken, nowSeconds, isoDate} from './lib/jwt.mjs';
import {tokenCases, v15AuthError} from './lib/tokens.mjs';

useHarness();

const AUTH_KEY = 'auth-test-key';
/** jsonwebtoken's header, base64url: every token must start with it (docs/protocol.md §8.3). */
const HS256_HEADER = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9';

const NOT_SIGNED_IN = {message: 'This socket is not signed in', name: 'NotSignedInError'};
const USERNAME_REQUIRED = {message: 'A non-empty username is required', name: 'InvalidArgumentsError'};

function forbidden(owner) {
  return {message: `Only ${owner} may subscribe to private/${owner}`, name: 'ForbiddenChannelError'};
}

function readonlyError(channel) {
  return {message: `Clients may not publish to ${channel}`, name: 'ReadOnlyChannelError'};
}

/** The authError as the server sends it: v1 = socketcluster-server 14 (no isBadToken), v2 = v15+. */
function expectedAuthError(protocol, testCase) {
  return protocol === '1' ? testCase.error : v15AuthError(testCase);
}

/** Waits until the token `exp` (seconds) is in the past by `margin` ms. */
async function waitPastExpiry(exp, margin = 150) {
  let ms = exp * 1000 - Date.now() + margin;
  if (ms > 0) await sleep(ms);
}

/**
 * Delivery barrier for the boilerplate (which has no `serverpublish`): `client` publishes a fresh token to a channel
 * of its own and waits for it to come back; earlier deliveries to `client` have then arrived.
 */
async function selfBarrier(client) {
  if (!client._selfBarrier) {
    client._selfBarrier = client.subscribe(uniqueName('barrier'));
    await client._selfBarrier.waitSubscribed();
  }
  let token = uniqueName('token');
  await client.invokePublish(client._selfBarrier.name, token);
  await client._selfBarrier.waitMessage((m) => m === token);
}

/** Signs in `client` as `username` and waits for the token to be stored and the `authenticate` event. */
async function login(client, username, event = 'login') {
  await withTimeout(client.invoke(event, {username}), 5000, event);
  await client.waitEvent('authenticate');
  return client.signedAuthToken;
}

for (const V of VERSIONS) {
  describe(`${V.name} client, boilerplate, protocol v${V.protocol}`, () => {
    let server;
    before(async () => {
      server = await startBoilerplate({
        'protocol-version': V.protocol, 'auth-key': AUTH_KEY, 'ping-interval': 1000
      }, {keep: true});
    });

    test('login → #setAuthToken stored, authenticate event, whoami answers the username', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
      let token = await login(client, 'alice');
      assert.equal(typeof token, 'string');
      assert.equal(store.token, token, 'the client stored the token it was sent');
      assert.equal(client.authState, 'authenticated');
      assert.equal(client.authToken.username, 'alice');
      assert.equal(await client.invoke('whoami'), 'alice');
      // The token: jsonwebtoken's header bytes, payload {username, iat, exp} with the default 24 h expiry,
      // signed with the server's key.
      assert.equal(token.split('.')[0], HS256_HEADER);
      assert.deepEqual(decodeHeader(token), {alg: 'HS256', typ: 'JWT'});
      let payload = decodePayload(token);
      assert.deepEqual(Object.keys(payload), ['username', 'iat', 'exp']);
      assert.equal(payload.exp - payload.iat, 86400);
      assert.ok(Math.abs(payload.iat - nowSeconds()) <= 5, 'iat is now');
      assert.equal(signToken(payload, AUTH_KEY), token, 'HS256 signature with the server key');
      let changes = client.events.all.filter((e) => e.type === 'authStateChange');
      assert.deepEqual(changes.map((e) => [e.oldState, e.newState]), [['unauthenticated', 'authenticated']]);
    });

    test('login with a missing or empty username → error, no token', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      for (let data of [{}, {username: ''}, {username: '   '}, {username: null}, {username: 42}, null, 'alice']) {
        let error = await expectRejection(client.invoke('login', data), 5000, `login ${JSON.stringify(data)}`);
        assert.deepStrictEqual(errorObject(error), USERNAME_REQUIRED, `login ${JSON.stringify(data)}`);
      }
      assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
      assert.equal(store.token, null);
      assert.equal(client.authState, 'unauthenticated');
      assert.equal(client.events.all.some((e) => e.type === 'authenticate'), false);
    });

    test('private/<username>: the owner may subscribe; another user and anonymous sockets get the error', {timeout: 15000}, async () => {
      let alice = await connectClient(V, server);
      let bob = await connectClient(V, server);
      let anonymous = await connectClient(V, server);
      await login(alice, 'alice');
      await login(bob, 'bob');
      let mine = alice.subscribe('private/alice');
      await mine.waitSubscribed();
      assert.equal(mine.state, 'subscribed');
      let stolen = bob.subscribe('private/alice');
      assert.deepStrictEqual(errorObject(await stolen.waitSubscribeFail()), forbidden('alice'));
      assert.equal(stolen.state, 'unsubscribed');
      let anon = anonymous.subscribe('private/alice');
      assert.deepStrictEqual(errorObject(await anon.waitSubscribeFail()), forbidden('alice'));
      // Anyone may publish to it: one-to-one messages reach the owner only.
      await bob.invokePublish('private/alice', {from: 'bob', text: 'hi'});
      anonymous.publish('private/alice', {from: 'anon'});
      assert.deepStrictEqual(await mine.next(), {from: 'bob', text: 'hi'});
      assert.deepStrictEqual(await mine.next(), {from: 'anon'});
      await selfBarrier(bob);
      assert.deepEqual(stolen.messages.drain(), []);
    });

    test('private channel with waitForAuth: held back while anonymous, subscribed right after login (TV-13, TV-22)', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let channel = client.subscribe('private/carol', {waitForAuth: true});
      await sleep(200);
      assert.equal(channel.state, 'pending', 'not sent while unauthenticated');
      assert.equal(client.events.all.some((e) => e.type === 'subscribeFail'), false);
      await login(client, 'carol');
      await channel.waitSubscribed();
      assert.equal(channel.state, 'subscribed');
    });

    test('readonly/*: subscribe allowed, client publish denied with the error; announce delivers to readonly/news', {timeout: 15000}, async () => {
      let reader = await connectClient(V, server);
      let writer = await connectClient(V, server);
      await login(writer, 'walter');
      let news = reader.subscribe('readonly/news');
      let other = reader.subscribe('readonly/other');
      await Promise.all([news.waitSubscribed(), other.waitSubscribed()]);
      for (let channel of ['readonly/news', 'readonly/other']) {
        let error = await expectRejection(writer.invokePublish(channel, 'sneaky'), 5000, `publish to ${channel}`);
        assert.deepStrictEqual(errorObject(error), readonlyError(channel));
      }
      writer.publish('readonly/news', 'sneaky without ack');
      // announce (any client, signed in or not) → the server publishes to readonly/news.
      await writer.invoke('announce', {headline: 'from the server'});
      assert.deepStrictEqual(await news.next(), {headline: 'from the server'});
      reader.transmit('announce', 'second');
      assert.equal(await news.next(), 'second');
      await selfBarrier(reader);
      assert.deepEqual(news.messages.drain(), [], 'client publishes were not delivered');
      assert.deepEqual(other.messages.drain(), []);
    });

    test('token expiry while connected: the next event gets #removeAuthToken first, whoami then errors (TV-23)', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      let token = await login(client, 'shorty', 'loginShort');
      let payload = decodePayload(token);
      assert.equal(payload.exp - payload.iat, 2, 'loginShort issues a 2 s token');
      assert.equal(await client.invoke('whoami'), 'shorty');
      // The next event after exp finds the token expired (unless a pong found it a moment earlier: same outcome).
      await waitPastExpiry(payload.exp, 50);
      let error = await expectRejection(client.invoke('whoami'), 5000, 'whoami after expiry');
      assert.deepStrictEqual(errorObject(error), NOT_SIGNED_IN);
      await client.waitEvent('removeAuthToken');
      await client.waitEvent('deauthenticate');
      assert.equal(client.authState, 'unauthenticated');
      assert.equal(store.token, null, 'the expired token was removed from the store');
      assert.equal(client.state, 'open', 'expiry does not close the connection');
    });

    test('token expiry without traffic: the heartbeat removes the token', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      let token = await login(client, 'idle', 'loginShort');
      let {exp} = decodePayload(token);
      // Pings every second (--ping-interval 1000): a pong after exp deauthenticates the socket.
      let removed = await client.waitEvent('removeAuthToken', () => true, exp * 1000 - Date.now() + 3000);
      assert.ok(Date.now() >= exp * 1000, 'not removed before the token expired');
      assert.equal(removed.oldSignedAuthToken, token);
      assert.equal(store.token, null);
      assert.equal(client.authState, 'unauthenticated');
      assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
    });

    test('reconnect after a disconnect: the stored token authenticates the new handshake (TV-11, TV-20)', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      let token = await login(client, 'alice');
      let channel = client.subscribe('private/alice');
      await channel.waitSubscribed();
      let firstId = client.id;
      // 4100 < 4500: the client reconnects by itself, sending the stored token in #handshake.
      client.disconnect(4100, 'reconnect please');
      let status = await client.ready(5000);
      assert.notEqual(status.id, firstId);
      assert.equal(status.isAuthenticated, true);
      assert.equal(status.authError, undefined);
      assert.equal(status.authToken, token, 'the client reports the token it sent');
      assert.equal(client.authState, 'authenticated');
      assert.equal(await client.invoke('whoami'), 'alice');
      await channel.waitSubscribed();
      assert.equal(channel.state, 'subscribed', 'private/alice re-subscribed on the new connection');
      await client.invoke('announce', 'ok'); // still a working connection
    });

    test('server-initiated close (worker reboot, SIGUSR2 to the master): reconnect, the stored token still authenticates', {timeout: 20000}, async () => {
      // A server of its own: its only worker process is replaced by a new one, which must accept tokens signed
      // by the old one (the key comes from --auth-key, shared by every worker).
      let own = await startBoilerplate({'protocol-version': V.protocol, 'auth-key': AUTH_KEY});
      let store = new TokenStore();
      let client = await connectClient(V, own, {authEngine: store});
      let token = await login(client, 'phoenix');
      let firstId = client.id;
      process.kill(own.child.pid, 'SIGUSR2');
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 1001, 'the draining worker closes with 1001');
      let status = await client.ready(10000);
      assert.notEqual(status.id, firstId);
      assert.equal(status.isAuthenticated, true);
      assert.equal(status.authToken, token);
      assert.equal(store.token, token);
      assert.equal(await client.invoke('whoami'), 'phoenix');
    });

    test('a new client instance with the stored token is authenticated at the handshake', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let first = await connectClient(V, server, {authEngine: store});
      let token = await login(first, 'dora');
      first.disconnect();
      let second = createClient(V, server, {authEngine: store});
      let status = await second.ready();
      assert.equal(status.isAuthenticated, true);
      assert.equal(second.authState, 'authenticated');
      assert.equal(second.signedAuthToken, token);
      await second.waitEvent('authenticate');
      assert.equal(await second.invoke('whoami'), 'dora');
      let channel = second.subscribe('private/dora');
      await channel.waitSubscribed();
    });

    test('client deauthenticate() → #removeAuthToken to the server; authenticate(token) signs in again (TV-12, TV-21)', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      let token = await login(client, 'erin');
      await client.deauthenticate();
      assert.equal(store.token, null);
      assert.equal(client.authState, 'unauthenticated');
      assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
      let status = await client.authenticate(token);
      assert.deepEqual(status, {isAuthenticated: true, authError: null});
      assert.equal(store.token, token);
      assert.equal(client.authState, 'authenticated');
      assert.equal(await client.invoke('whoami'), 'erin');
    });

    for (const testCase of tokenCases(AUTH_KEY)) {
      test(`stored token at the handshake: ${testCase.name}`, {timeout: 15000}, async () => {
        let store = new TokenStore(testCase.token);
        let client = createClient(V, server, {authEngine: store});
        let status = await client.ready();
        if (!testCase.error) {
          assert.equal(status.isAuthenticated, true);
          assert.equal(status.authError, undefined);
          assert.equal(await client.invoke('whoami'), 'alice');
          assert.equal(store.token, testCase.token);
          return;
        }
        assert.equal(status.isAuthenticated, false);
        assert.deepStrictEqual(errorObject(status.authError), expectedAuthError(V.protocol, testCase));
        if (testCase.bad) {
          await client.waitEvent('removeAuthToken');
          assert.equal(store.token, null, 'a bad token is removed from the client');
        } else {
          // Not a bad token: the client keeps it (no #removeAuthToken).
          await client.invoke('announce', 'sync');
          assert.equal(client.events.all.some((e) => e.type === 'removeAuthToken'), false);
          assert.equal(store.token, testCase.token);
        }
        assert.equal(client.authState, 'unauthenticated');
        assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
        assert.equal(client.state, 'open', 'a token failure is soft: the connection stays');
      });
    }

    test('#authenticate outcomes with the official client (TV-15, TV-23)', {timeout: 15000}, async () => {
      let store = new TokenStore();
      let client = await connectClient(V, server, {authEngine: store});
      let cases = tokenCases(AUTH_KEY);
      for (let testCase of cases) {
        if (!testCase.error) {
          let status = await client.authenticate(testCase.token);
          assert.deepEqual(status, {isAuthenticated: true, authError: null}, testCase.name);
          assert.equal(client.authState, 'authenticated');
          assert.equal(store.token, testCase.token);
          assert.equal(await client.invoke('whoami'), 'alice');
        } else if (testCase.bad) {
          let error = await expectRejection(client.authenticate(testCase.token), 5000, testCase.name);
          assert.deepStrictEqual(errorObject(error), expectedAuthError(V.protocol, testCase), testCase.name);
          await client.waitEvent('removeAuthToken');
          assert.equal(client.authState, 'unauthenticated');
          assert.deepStrictEqual(errorObject(await expectRejection(client.invoke('whoami'))), NOT_SIGNED_IN);
        } else {
          // Not active yet: an answer, not an error; the client stores the token but is not authenticated.
          let status = await client.authenticate(testCase.token);
          assert.equal(status.isAuthenticated, false);
          assert.deepStrictEqual(errorObject(status.authError), expectedAuthError(V.protocol, testCase));
          assert.equal(client.authState, 'unauthenticated');
          await sleep(50);
          assert.equal(store.token, testCase.token);
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Raw frames against the boilerplate
// ---------------------------------------------------------------------------------------------------------------

for (const protocol of ['1', '2']) {
  const v1 = protocol === '1';
  const remove = v1 ? '{"event":"#removeAuthToken","data":null}' : '{"event":"#removeAuthToken"}';

  describe(`raw frames, boilerplate, protocol v${protocol}`, () => {
    let server;
    before(async () => {
      server = await startBoilerplate({'protocol-version': protocol, 'auth-key': AUTH_KEY}, {keep: true});
    });

    async function session() {
      let raw = await rawConnect(server, {pong: 'any'});
      await raw.handshake(1);
      return raw;
    }

    test('login (TV-9): #setAuthToken before the response; whoami; client #removeAuthToken is not answered', {timeout: 15000}, async () => {
      let raw = await session();
      raw.send('{"event":"login","data":{"username":"alice"},"cid":15}');
      let setToken = await raw.next();
      let match = /^\{"event":"#setAuthToken","data":\{"token":"([^"]+)"\}\}$/.exec(setToken);
      assert.ok(match, `#setAuthToken frame: ${setToken}`);
      assert.equal(match[1].split('.')[0], HS256_HEADER);
      assert.equal(await raw.next(), '{"rid":15}');
      raw.send('{"event":"whoami","cid":16}');
      assert.equal(await raw.next(), '{"rid":16,"data":"alice"}');
      raw.send('{"event":"#removeAuthToken"}');
      raw.send('{"event":"whoami","cid":17}');
      assert.equal(await raw.next(), '{"rid":17,"error":{"message":"This socket is not signed in","name":"NotSignedInError"}}');
      raw.send(`{"event":"#authenticate","data":"${match[1]}","cid":18}`);
      assert.equal(await raw.next(), '{"rid":18,"data":{"isAuthenticated":true,"authError":null}}');
      raw.send('{"event":"whoami","cid":19}');
      assert.equal(await raw.next(), '{"rid":19,"data":"alice"}');
    });

    test(`expired stored token at the handshake (TV-13, TV-23): #removeAuthToken ${v1 ? 'before' : 'after'} the response`, {timeout: 15000}, async () => {
      let exp = nowSeconds() - 60;
      let token = signToken({username: 'old', exp, iat: exp - 10}, AUTH_KEY);
      let raw = await rawConnect(server, {pong: 'any'});
      raw.send(JSON.stringify({event: '#handshake', data: {authToken: token}, cid: 1}));
      let first = await raw.next();
      let second = await raw.next();
      let [removeFrame, response] = v1 ? [first, second] : [second, first];
      assert.equal(removeFrame, remove);
      let {data} = JSON.parse(response);
      let authError = `{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"${isoDate(exp)}"${v1 ? '' : ',"isBadToken":true'}}`;
      assert.equal(response, `{"rid":1,"data":{"id":${JSON.stringify(data.id)},"pingTimeout":${data.pingTimeout},"authError":${authError},"isAuthenticated":false}}`);
    });

    test('not-yet-valid token at the handshake (TV-14, TV-23): authError, no #removeAuthToken', {timeout: 15000}, async () => {
      let nbf = nowSeconds() + 3600;
      let token = signToken({username: 'bob', nbf, iat: nbf - 3600}, AUTH_KEY);
      let raw = await rawConnect(server, {pong: 'any'});
      raw.send(JSON.stringify({event: '#handshake', data: {authToken: token}, cid: 1}));
      let response = await raw.next();
      let {data} = JSON.parse(response);
      let authError = `{"message":"jwt not active","name":"AuthTokenNotBeforeError","date":"${isoDate(nbf)}"${v1 ? '' : ',"isBadToken":false'}}`;
      assert.equal(response, `{"rid":1,"data":{"id":${JSON.stringify(data.id)},"pingTimeout":${data.pingTimeout},"authError":${authError},"isAuthenticated":false}}`);
      raw.send('{"event":"echo","data":1,"cid":2}');
      assert.equal(await raw.next(), '{"rid":2,"data":1}', 'no #removeAuthToken came before');
    });

    test('a non-string token at the handshake (TV-14) → AuthTokenError', {timeout: 15000}, async () => {
      let raw = await rawConnect(server, {pong: 'any'});
      raw.send('{"event":"#handshake","data":{"authToken":12345},"cid":1}');
      let frames = [await raw.next(), await raw.next()];
      let response = frames.find((f) => f.startsWith('{"rid":1'));
      assert.ok(frames.includes(remove));
      let authError = `{"message":"Invalid token format - Token must be a string","name":"AuthTokenError"${v1 ? '' : ',"isBadToken":true'}}`;
      assert.ok(response.includes(`"authError":${authError},"isAuthenticated":false}}`), response);
    });

    test(`#authenticate outcomes (${v1 ? 'TV-15' : 'TV-23'}), byte for byte`, {timeout: 15000}, async () => {
      let raw = await session();
      let valid = userToken('carol', AUTH_KEY, {ttl: 60});
      raw.send(JSON.stringify({event: '#authenticate', data: valid, cid: 2}));
      assert.equal(await raw.next(), '{"rid":2,"data":{"isAuthenticated":true,"authError":null}}');

      let malformed = '{"message":"jwt malformed","name":"AuthTokenInvalidError"}';
      raw.send('{"event":"#authenticate","data":"garbage","cid":3}');
      if (v1) {
        assert.equal(await raw.next(), remove);
        assert.equal(await raw.next(), `{"rid":3,"error":${malformed},"data":{"isAuthenticated":false,"authError":${malformed}}}`);
      } else {
        assert.equal(await raw.next(), '{"rid":3,"error":{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true}}');
        assert.equal(await raw.next(), remove);
      }

      let nbf = nowSeconds() + 3600;
      raw.send(JSON.stringify({event: '#authenticate', data: signToken({username: 'dave', nbf, iat: nbf - 3600}, AUTH_KEY), cid: 4}));
      let notActive = `{"message":"jwt not active","name":"AuthTokenNotBeforeError","date":"${isoDate(nbf)}"${v1 ? '' : ',"isBadToken":false'}}`;
      assert.equal(await raw.next(), `{"rid":4,"data":{"isAuthenticated":false,"authError":${notActive}}}`);

      let missing = '{"message":"jwt must be provided","name":"AuthTokenInvalidError"}';
      raw.send('{"event":"#authenticate","data":null,"cid":6}');
      if (v1) {
        assert.equal(await raw.next(), remove);
        assert.equal(await raw.next(), `{"rid":6,"error":${missing},"data":{"isAuthenticated":false,"authError":${missing}}}`);
      } else {
        assert.equal(await raw.next(), '{"rid":6,"error":{"message":"jwt must be provided","name":"AuthTokenInvalidError","isBadToken":true}}');
        assert.equal(await raw.next(), remove);
      }
      raw.send('{"event":"#removeAuthToken"}');
      raw.send('{"event":"echo","data":"end","cid":7}');
      assert.equal(await raw.next(), '{"rid":7,"data":"end"}', '#removeAuthToken from the client is not answered');
    });

    test('#authenticate without a cid → close 4008 (TV-24)', {skip: v1 ? 'v2 only' : false, timeout: 15000}, async () => {
      let raw = await session();
      raw.send('{"event":"#authenticate","data":"x"}');
      assert.deepEqual(await raw.waitClose(), {code: 4008, reason: ''});
    });

    test('token expiry while connected: #removeAuthToken, then the answer to the event (TV-23)', {timeout: 15000}, async () => {
      let raw = await session();
      raw.send('{"event":"loginShort","data":{"username":"shorty"},"cid":10}');
      let setToken = await raw.next();
      let token = /"token":"([^"]+)"/.exec(setToken)[1];
      assert.equal(await raw.next(), '{"rid":10}');
      await waitPastExpiry(decodePayload(token).exp);
      raw.send('{"event":"echo","data":"after expiry","cid":13}');
      assert.equal(await raw.next(), remove);
      assert.equal(await raw.next(), '{"rid":13,"data":"after expiry"}');
      raw.send('{"event":"whoami","cid":14}');
      assert.equal(await raw.next(), '{"rid":14,"error":{"message":"This socket is not signed in","name":"NotSignedInError"}}');
    });
  });
}
