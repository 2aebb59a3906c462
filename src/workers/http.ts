/**
 * Outbound HTTP for actions (workflows.md): refuses loopback, private, link-local and metadata
 * addresses unless the tenant allows them (checked on the addresses DNS returns, at connect time,
 * so a name that resolves to a private address is refused too), follows redirects only after the
 * same check (at most 3), times out, and reads at most 1 MiB of the answer.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { ActionError } from './errors.js';

const BLOCKED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  // unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d
  ['::', 96],
  // IPv4-translated (SIIT) ::ffff:0:a.b.c.d; IPv4-mapped ::ffff:a.b.c.d is checked as IPv4 below
  ['::ffff:0:0:0', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
  ['fd00:ec2::', 32],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv6');
}

/** Whether an address is one actions may not reach by default. */
export function isBlockedAddress(address: string): boolean {
  const v = isIP(address);
  if (v === 4) return BLOCKED.check(address, 'ipv4');
  if (v === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return BLOCKED.check(mapped[1]!, 'ipv4');
    return BLOCKED.check(address, 'ipv6');
  }
  return true;
}

function refuse(host: string, address: string): ActionError {
  return new ActionError(
    `refused to connect to ${host} (${address}): loopback, private, link-local and metadata addresses are blocked (tenant setting allowPrivateNetworks)`,
    { retryable: false, code: 'SB_SSRF' },
  );
}

/**
 * The address to connect to for a host that is not HTTP (an SMTP server of a connection): the
 * first address DNS gives, refused when any address of the name is blocked. Connect to the
 * returned address (not the name again), so the check and the connection see the same address.
 */
export function allowedAddress(host: string): Promise<string> {
  if (isIP(host)) return isBlockedAddress(host) ? Promise.reject(refuse(host, host)) : Promise.resolve(host);
  return new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (err, list) => {
      if (err)
        return reject(
          new ActionError(`cannot resolve ${host}: ${err.message}`, { retryable: true, code: 'SB_DNS' }),
        );
      const bad = list.find((a) => isBlockedAddress(a.address));
      if (bad) return reject(refuse(host, bad.address));
      resolve(list[0]!.address);
    }),
  );
}

/** A DNS lookup that fails when any address of the name is blocked. */
function guardedLookup(hostname: string): LookupFunction {
  return (host, options, callback) => {
    dnsLookup(host, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as LookupAddress[];
      const bad = list.find((a) => isBlockedAddress(a.address));
      if (bad) return callback(refuse(hostname, bad.address), '', 0);
      if ((options as { all?: boolean }).all)
        return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      const first = list[0]!;
      callback(null, first.address, first.family);
    });
  };
}

export interface HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
  readonly timeoutMs?: number;
  readonly allowPrivate?: boolean;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

const MAX_BODY = 1 << 20;
const MAX_REDIRECTS = 3;

/** Sends a request; network errors and timeouts are retryable ActionErrors, refusals are not. */
export async function send(req: HttpRequest): Promise<HttpResponse> {
  let url = parseUrl(req.url);
  let method = req.method.toUpperCase();
  let body = req.body;
  for (let hop = 0; ; hop++) {
    const res = await once(url, method, req, body);
    const location = res.headers.location;
    if (res.status >= 300 && res.status < 400 && location && res.status !== 304) {
      if (hop >= MAX_REDIRECTS)
        throw new ActionError(`too many redirects (last: ${location})`, { retryable: false });
      url = parseUrl(new URL(location, url).toString());
      // 303, and 301/302 after POST, become GET (as browsers and fetch do).
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
      continue;
    }
    return res;
  }
}

function parseUrl(text: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ActionError(`not a URL: ${JSON.stringify(text.slice(0, 200))}`, { retryable: false });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new ActionError(`only http and https URLs are allowed, not ${u.protocol}`, { retryable: false });
  return u;
}

function once(
  url: URL,
  method: string,
  req: HttpRequest,
  body: string | Buffer | undefined,
): Promise<HttpResponse> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!req.allowPrivate && isIP(host) && isBlockedAddress(host)) return Promise.reject(refuse(host, host));
  const mod = url.protocol === 'https:' ? https : http;
  const timeout = req.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'user-agent': 'Signalbox/0.1', ...req.headers };
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const r = mod.request(
      url,
      {
        method,
        headers,
        ...(req.allowPrivate ? {} : { lookup: guardedLookup(host) }),
        signal: AbortSignal.timeout(timeout),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
          const h: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) h[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks).toString('utf8') });
        };
        res.on('data', (c: Buffer) => {
          if (size + c.length <= MAX_BODY) {
            size += c.length;
            chunks.push(c);
            return;
          }
          // Past the cap the answer is known (status, headers, its start): stop reading, rather
          // than wait out a body that may never end and then call the step a timeout.
          chunks.push(c.subarray(0, MAX_BODY - size));
          size = MAX_BODY;
          done();
          res.destroy();
        });
        res.on('end', done);
        res.on('error', (e) => reject(networkError(e, url)));
      },
    );
    r.on('error', (e) => reject(e instanceof ActionError ? e : networkError(e, url)));
    if (body !== undefined) r.end(body);
    else r.end();
  });
}

function networkError(e: Error, url: URL): ActionError {
  if (e instanceof ActionError) return e;
  const timedOut = e.name === 'AbortError' || e.name === 'TimeoutError';
  return new ActionError(`${timedOut ? 'timed out' : 'network error'} calling ${url.origin}: ${e.message}`, {
    retryable: true,
    code: timedOut ? 'SB_TIMEOUT' : 'SB_NETWORK',
  });
}

/**
 * The longest wait a `Retry-After` is taken for: a server asking for more (a typo, a day-long
 * maintenance) would otherwise park the step, or a PSA connection, for as long as it said. After
 * an hour the step tries again and is told again.
 */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * `Retry-After` as milliseconds, at most MAX_RETRY_AFTER_MS: delay-seconds (fractions accepted,
 * some servers send them) or an HTTP date. Undefined when absent or neither: Date.parse alone
 * would read "1.5" or "-5" as dates in 2001.
 */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(v)) ms = Number(v) * 1000;
  else if (/[a-z]/i.test(v)) {
    const t = Date.parse(v);
    if (!Number.isFinite(t)) return undefined;
    ms = t - now;
  } else return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.ceil(ms)));
}

/** Classifies an HTTP answer the way workflows.md says: 2xx ok; 408, 429, 5xx retryable; other 4xx not. */
export function checkStatus(res: HttpResponse, what: string): void {
  if (res.status >= 200 && res.status < 300) return;
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  throw new ActionError(`${what} answered ${res.status}: ${res.body.slice(0, 300)}`, {
    retryable,
    status: res.status,
    ...(retryable ? { retryAfterMs: retryAfterMs(res.headers['retry-after']) } : {}),
  });
}
