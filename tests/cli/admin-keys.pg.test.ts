/** `signalbox admin keys create|list|revoke`: the bootstrap of API keys from the command line. */
import { execFile } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { ApiKeys } from '../../src/admin/index.js';
import { openPostgres } from '../../src/store/index.js';
import { BIN, serveEnv } from './serve-env.js';

const { url, schema, env, cleanup } = serveEnv('keys');
afterAll(cleanup);

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, 'admin', ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

it('makes a key shown once, lists it without the secret, revokes it', async () => {
  const made = await cli(['keys', 'create', '--tenant', 'acme', '--role', 'editor', '--name', 'ci']);
  expect(made.code).toBe(0);
  const key = made.stdout.trim();
  expect(key).toMatch(/^sbk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  expect(made.stderr).toMatch(/made editor key [0-9a-f]{16} for tenant "acme"/);
  const db = await openPostgres({ url, schema });
  const caller = await new ApiKeys(db).authenticate(key);
  expect(caller).toMatchObject({ tenant: 'acme', role: 'editor' });
  const listed = await cli(['keys', 'list', '--tenant', 'acme']);
  expect(listed.stdout).toContain(`${caller.keyId}\teditor\tactive\tci`);
  expect(listed.stdout).not.toContain(key);
  expect((await cli(['keys', 'revoke', '--tenant', 'acme', '--id', caller.keyId])).code).toBe(0);
  await expect(new ApiKeys(db).authenticate(key)).rejects.toThrow(/revoked/);
  await db.close();
  // Bad input: exit 2 with a reason, nothing made.
  for (const [args, why] of [
    [['keys', 'create', '--tenant', 'acme', '--role', 'owner'], /--role must be admin, editor or viewer/],
    [['keys', 'create', '--tenant', 'Bad Tenant', '--role', 'admin'], /--tenant must name a tenant/],
    [['keys', 'create', '--tenant', 'acme', '--role', 'admin', '--colour', 'red'], /unknown option --colour/],
    [['keys', 'frobnicate'], /usage:/],
  ] as const) {
    const r = await cli([...args]);
    expect([r.code, r.stdout]).toEqual([2, '']);
    expect(r.stderr).toMatch(why);
  }
  expect((await cli(['keys', 'revoke', '--tenant', 'acme', '--id', 'ffffffffffffffff'])).code).toBe(1);
});
