/**
 * Sender verification helpers. Everything compares in constant time, on the raw request bytes
 * (sources.md: never re-serialise to verify).
 */
import { createHmac, hash, timingSafeEqual } from 'node:crypto';

/** Constant-time equality of two strings (of any length: both are hashed first). */
export function safeEqual(a: string, b: string): boolean {
  const x = hash('sha256', a, 'buffer');
  const y = hash('sha256', b, 'buffer');
  return timingSafeEqual(x, y);
}

/** Constant-time check of a base64 signature against the expected digest. */
export function signatureMatches(expected: Buffer, given: string | undefined): boolean {
  if (!given) return false;
  const got = Buffer.from(given.trim(), 'base64');
  if (got.length !== expected.length) return false;
  return timingSafeEqual(got, expected);
}

/** ConnectWise: HMAC-SHA256 with key = SHA-256(signing key) as raw bytes, over the raw body. */
export function connectwiseDigest(signingKey: string, body: Buffer): Buffer {
  const key = hash('sha256', signingKey, 'buffer');
  return createHmac('sha256', key).update(body).digest();
}

/** Autotask: HMAC-SHA1 with the secret key over the raw body (header value `sha1=<base64>`). */
export function autotaskDigest(secret: string, body: Buffer): Buffer {
  return createHmac('sha1', secret).update(body).digest();
}
