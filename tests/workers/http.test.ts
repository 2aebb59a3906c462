/**
 * The workers' HTTP client: which addresses it refuses (SSRF), how it reads Retry-After, and,
 * against a local server, what it does with an answer that never ends.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBlockedAddress, MAX_RETRY_AFTER_MS, retryAfterMs, send } from '../../src/workers/http.js';
import { coolMs, MIN_COOL_MS } from '../../src/workers/psa.js';

let server: Server;
let url = '';
let closed = false;

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const more = () => {
      while (!res.destroyed && res.write(chunk)) {}
      if (!res.destroyed) res.once('drain', more);
    };
    res.on('close', () => (closed = true));
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/endless`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('answers with the first MiB of a body that never ends, instead of timing out', async () => {
  const res = await send({ method: 'POST', url, body: '{}', allowPrivate: true, timeoutMs: 5_000 });
  expect(res.status).toBe(200);
  expect(res.body.length).toBe(1 << 20);
  expect(res.body.startsWith('aaaa')).toBe(true);
  for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
  expect(closed).toBe(true);
});

describe('isBlockedAddress', () => {
  it('blocks loopback, private, link-local, metadata and unspecified addresses, however written', () => {
    for (const a of [
      '127.0.0.1',
      '127.255.0.9',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::',
      '::1',
      '0:0:0:0:0:0:0:1',
      'fe80::1',
      'fd00::1',
      'fd00:ec2::254',
      // IPv4-mapped, dotted and as URL parsers write it
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:a9fe:a9fe',
      '::ffff:10.0.0.1',
      // IPv4-compatible (deprecated) and IPv4-translated forms of loopback
      '::127.0.0.1',
      '::7f00:1',
      '::ffff:0:7f00:1',
      '64:ff9b::7f00:1',
      'not an address',
    ]) {
      expect([a, isBlockedAddress(a)]).toEqual([a, true]);
    }
  });

  it('lets public addresses through', () => {
    for (const a of [
      '93.184.216.34',
      '1.1.1.1',
      '2606:4700:4700::1111',
      '::ffff:93.184.216.34',
      '172.32.0.1',
    ]) {
      expect([a, isBlockedAddress(a)]).toEqual([a, false]);
    }
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  it('reads delay-seconds (fractions too) and HTTP dates, and nothing else', () => {
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs(' 1.5 ', now)).toBe(1500);
    expect(retryAfterMs('Mon, 07 Dec 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Mon, 07 Dec 2026 11:00:00 GMT', now)).toBe(0);
    // Date.parse reads these as days of 2001
    for (const junk of ['-5', '1.5.2', 'soon', '', undefined])
      expect([junk, retryAfterMs(junk, now)]).toEqual([junk, undefined]);
  });
  it('is taken for an hour at most', () => {
    expect(retryAfterMs('86400', now)).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMs('Fri, 01 Jan 2100 00:00:00 GMT', now)).toBe(MAX_RETRY_AFTER_MS);
  });
  it('rests a PSA connection at least a second after a 429, 5 s when Retry-After says nothing usable', () => {
    expect(coolMs('0', now)).toBe(MIN_COOL_MS);
    expect(coolMs('0.2', now)).toBe(MIN_COOL_MS);
    expect(coolMs('7', now)).toBe(7000);
    expect(coolMs(undefined, now)).toBe(5000);
    expect(coolMs('whenever', now)).toBe(5000);
    expect(coolMs('999999', now)).toBe(MAX_RETRY_AFTER_MS);
  });
});
