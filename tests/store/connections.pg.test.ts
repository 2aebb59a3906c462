/**
 * Connections on real Postgres: secrets are encrypted at rest, bound to their row, never returned
 * by get or list, and bad input (a bad key, a tampered or moved ciphertext, an unknown kind) gets
 * a clear error and changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ConnectionStore,
  type Db,
  migrate,
  openPostgres,
  RuleStore,
  SecretBox,
} from '../../src/store/index.js';

const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_conn_${process.pid}_${Date.now().toString(36)}`;
let db: Db;
let store: ConnectionStore;
const key = randomBytes(32);

beforeAll(async () => {
  db = await openPostgres({ url, schema });
  await migrate(db);
  await new RuleStore(db).ensureTenant('acme');
  await new RuleStore(db).ensureTenant('other');
  store = new ConnectionStore(db, new SecretBox(key));
});
afterAll(async () => {
  await db?.query(`drop schema if exists "${schema}" cascade`);
  await db?.close();
});

it('stores secrets encrypted and returns them only through secret()', async () => {
  const info = await store.put(
    'acme',
    {
      id: 'halo-main',
      kind: 'halo',
      settings: { clientId: 'c1' },
      secret: { clientSecret: 'hunter2-very-secret' },
    },
    'test',
  );
  expect(info).toMatchObject({
    id: 'halo-main',
    kind: 'halo',
    settings: { clientId: 'c1' },
    hasSecret: true,
  });
  expect(JSON.stringify(info)).not.toContain('hunter2');
  expect(JSON.stringify(await store.get('acme', 'halo-main'))).not.toContain('hunter2');
  expect(JSON.stringify(await store.list('acme'))).not.toContain('hunter2');
  const raw = await db.query<{ secret_ciphertext: Buffer }>('select secret_ciphertext from connections');
  expect(Buffer.from(raw.rows[0]!.secret_ciphertext).toString('latin1')).not.toContain('hunter2');
  const audit = await db.query<{ details: unknown }>(
    "select details from audit_log where entity = 'connection'",
  );
  expect(JSON.stringify(audit.rows)).not.toContain('hunter2');
  expect(await store.secret('acme', 'halo-main')).toEqual({ clientSecret: 'hunter2-very-secret' });
  // Updating without a secret keeps the stored one.
  await store.put('acme', { id: 'halo-main', kind: 'halo', settings: { clientId: 'c2' } }, 'test');
  expect(await store.secret('acme', 'halo-main')).toEqual({ clientSecret: 'hunter2-very-secret' });
  expect(await store.get('other', 'halo-main')).toBeUndefined();
});

it('a ciphertext moved to another row, tampered with, or read with another key does not decrypt', async () => {
  await store.put('other', { id: 'halo-main', kind: 'halo', secret: { clientSecret: 'theirs' } }, 'test');
  await db.query(
    "update connections set secret_ciphertext = (select secret_ciphertext from connections where tenant_id = 'acme' and id = 'halo-main') where tenant_id = 'other'",
  );
  await expect(store.secret('other', 'halo-main')).rejects.toThrow(/unable to authenticate|auth/i);
  // One ciphertext byte flipped (XOR 255), not set: a byte that already was 0xff (one ciphertext in
  // 256: the IV is random) left the row as it was, and the test failed about once in 256 runs.
  await db.query(
    "update connections set secret_ciphertext = set_byte(secret_ciphertext, 39, get_byte(secret_ciphertext, 39) # 255) where tenant_id = 'acme'",
  );
  await expect(store.secret('acme', 'halo-main')).rejects.toThrow(/unable to authenticate|auth/i);
  await store.put('acme', { id: 'cw', kind: 'connectwise', secret: { privateKey: 'k' } }, 'test');
  await expect(
    new ConnectionStore(db, new SecretBox(randomBytes(32))).secret('acme', 'cw'),
  ).rejects.toThrow();
});

it('refuses a key of the wrong size, and the database refuses a malformed row', async () => {
  expect(() => new SecretBox(randomBytes(16))).toThrow(/must be 32 bytes/);
  expect(() => SecretBox.fromText('not a key')).toThrow(/must be 32 bytes/);
  expect(SecretBox.fromText(key.toString('hex'))).toBeInstanceOf(SecretBox);
  await expect(store.put('acme', { id: 'x', kind: 'pager' as never }, 'test')).rejects.toThrow(
    /check constraint/,
  );
  await expect(store.put('acme', { id: 'Bad Id', kind: 'halo' }, 'test')).rejects.toThrow(/check constraint/);
  expect((await store.list('acme')).map((c) => c.id)).toEqual(['cw', 'halo-main']);
});
