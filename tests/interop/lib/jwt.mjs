// Hand-made JSON Web Tokens for the auth tests: HS256/384/512 signing with node:crypto, plus the broken variants a
// server must refuse (tampered signature, other key, `alg: none`, garbage). No dependency on the server's own JWT code.

import crypto from 'node:crypto';

const HMAC = {HS256: 'sha256', HS384: 'sha384', HS512: 'sha512'};

export function base64url(input) {
  return Buffer.from(typeof input === 'string' ? input : JSON.stringify(input)).toString('base64url');
}

/** Current time in whole seconds, as JWT `iat`/`exp`/`nbf` count it. */
export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/**
 * Signs `payload` (object, used as is: add `iat`/`exp` yourself) with `key`.
 * `alg`: HS256 (default), HS384, HS512, or `none` (unsigned token, empty signature segment).
 */
export function signToken(payload, key, {alg = 'HS256', header} = {}) {
  let head = base64url(header || {alg, typ: 'JWT'});
  let body = base64url(payload);
  if (alg === 'none') return `${head}.${body}.`;
  let hash = HMAC[alg];
  if (!hash) throw new Error(`unsupported alg ${alg}`);
  let signature = crypto.createHmac(hash, key).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/** A token like `signToken` makes, for `username`, valid for `ttl` seconds (negative = already expired). */
export function userToken(username, key, {ttl = 3600, extra = {}, alg} = {}) {
  let iat = nowSeconds();
  return signToken({username, ...extra, iat, exp: iat + ttl}, key, {alg});
}

/** The same token with one signature character changed (the signature no longer verifies). */
export function tamperSignature(token) {
  let dot = token.lastIndexOf('.');
  let signature = token.slice(dot + 1);
  let first = signature[0] === 'A' ? 'B' : 'A';
  return `${token.slice(0, dot + 1)}${first}${signature.slice(1)}`;
}

/** The same token with its payload replaced (signature kept: it no longer matches). */
export function tamperPayload(token, payload) {
  let [head, , signature] = token.split('.');
  return `${head}.${base64url(payload)}.${signature}`;
}

/** The decoded payload of a token (no verification). */
export function decodePayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** The decoded header of a token (no verification). */
export function decodeHeader(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8'));
}

/** `new Date(seconds * 1000).toJSON()`: how the reference serialises `expiry` / `date` in token errors. */
export function isoDate(seconds) {
  return new Date(seconds * 1000).toJSON();
}
