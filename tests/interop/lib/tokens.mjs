// The tokens a server must refuse (or accept) at the handshake and at #authenticate, with the error jsonwebtoken
// 9 / socketcluster-server 20 reports for each (docs/protocol.md §8.4). Shared by auth.test.mjs and auth-cross.test.mjs.

import {signToken, userToken, tamperSignature, nowSeconds, isoDate} from './jwt.mjs';

/**
 * `key`: the server's auth key. Returns [{name, token, error, bad}] where `error` is the authError object without
 * `isBadToken` (v15+ servers add `isBadToken: bad`), or `error: null` for tokens that must be accepted.
 */
export function tokenCases(key) {
  let now = nowSeconds();
  let expiredAt = now - 60;
  let activeAt = now + 3600;
  return [
    {name: 'valid HS256', token: userToken('alice', key), error: null, bad: false},
    {name: 'valid HS512 (any HMAC algorithm verifies)', token: userToken('alice', key, {alg: 'HS512'}), error: null, bad: false},
    {
      name: 'tampered signature',
      token: tamperSignature(userToken('alice', key)),
      error: {message: 'invalid signature', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'signed with another key',
      token: userToken('alice', `${key}-other`),
      error: {message: 'invalid signature', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'alg none (unsigned)',
      token: signToken({username: 'mallory', iat: now, exp: now + 3600}, key, {alg: 'none'}),
      error: {message: 'jwt signature is required', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'HS256 with its signature cut off (empty third segment)',
      token: stripSignature(userToken('alice', key)),
      error: {message: 'jwt signature is required', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'alg RS256 in the header of an HMAC-signed token',
      token: signToken({username: 'mallory', iat: now}, key, {header: {alg: 'RS256', typ: 'JWT'}}),
      error: {message: 'invalid algorithm', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'expired',
      token: signToken({username: 'bob', iat: expiredAt - 60, exp: expiredAt}, key),
      error: {message: 'jwt expired', name: 'AuthTokenExpiredError', expiry: isoDate(expiredAt)},
      bad: true
    },
    {
      name: 'garbage (not a JWT)',
      token: 'not-a-jwt',
      error: {message: 'jwt malformed', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'three segments of garbage (TV-22)',
      token: 'bad.token.value',
      error: {message: 'invalid token', name: 'AuthTokenInvalidError'},
      bad: true
    },
    {
      name: 'not active yet (nbf in the future): not a bad token',
      token: signToken({username: 'dave', nbf: activeAt, iat: now}, key),
      error: {message: 'jwt not active', name: 'AuthTokenNotBeforeError', date: isoDate(activeAt)},
      bad: false
    }
  ];
}

/** `header.payload.` : the token without its signature. */
function stripSignature(token) {
  return token.slice(0, token.lastIndexOf('.') + 1);
}

/** The authError a server with v15+ semantics sends for `testCase` (adds `isBadToken`). */
export function v15AuthError(testCase) {
  return testCase.error && {...testCase.error, isBadToken: testCase.bad};
}
