/**
 * A PSA body through its adapter without the sender's proof: for the admin `test` operation, where
 * an engineer pastes a body copied from the PSA's webhook log. The adapter runs exactly as on the
 * hot path (same envelope, ids, types, merge rules), but the body is signed here with a throwaway
 * key, so the verification step passes; nothing is fetched (a ConnectWise `key_url` is ignored),
 * and no snapshot is read: `previous` is absent unless the caller's envelope had one.
 */
import { randomBytes } from 'node:crypto';
import type { Envelope } from '../../engine/index.js';
import { type AdaptedEvent, AdapterError, type Connection, type HookRequest } from '../connection.js';
import type { KeyFetcher } from '../keys.js';
import { autotaskDigest, connectwiseDigest } from '../verify.js';
import { autotask } from './autotask.js';
import { connectwise } from './connectwise.js';
import { halo } from './halo.js';

const NO_FETCH = {
  get: () => Promise.reject(new Error('no key fetch in tests')),
  forget: () => {},
} as unknown as KeyFetcher;

export async function adaptUnverified(
  source: string,
  tenant: string,
  body: Buffer,
  receivedAt = Date.now(),
): Promise<{ envelopes: Envelope[]; errors: Array<{ index: number; error: string }> }> {
  const key = randomBytes(16).toString('hex');
  const base = { tenant, id: 'test' };
  const req = (headers: Record<string, string>): HookRequest => ({
    body,
    headers,
    rest: '',
    query: '',
    receivedAt,
  });
  let events: AdaptedEvent[];
  let errors: Array<{ index: number; error: string }> = [];
  try {
    if (source === 'connectwise') {
      const conn: Connection = { ...base, source, connectwise: { signingKey: key } };
      events = await connectwise(
        conn,
        req({ 'x-content-signature': connectwiseDigest(key, body).toString('base64') }),
        NO_FETCH,
      );
    } else if (source === 'autotask') {
      const conn: Connection = { ...base, source, autotask: { secret: key } };
      events = autotask(
        conn,
        req({ 'x-hook-signature': `sha1=${autotaskDigest(key, body).toString('base64')}` }),
      );
    } else if (source === 'halo') {
      const conn: Connection = { ...base, source, halo: { username: 'test', password: key } };
      ({ events, errors } = halo(
        conn,
        req({ authorization: `Basic ${Buffer.from(`test:${key}`).toString('base64')}` }),
      ));
    } else {
      throw new AdapterError(400, `unknown PSA source "${source}" (connectwise, autotask, halo)`);
    }
  } catch (e) {
    if (e instanceof AdapterError) throw new Error(e.message);
    throw e;
  }
  return { envelopes: events.map((e) => ({ ...e.envelope }) as unknown as Envelope), errors };
}
