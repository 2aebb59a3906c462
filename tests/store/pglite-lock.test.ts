/**
 * The embedded database's data directory belongs to one process at a time (PGlite does not check;
 * two writers corrupt it): openPglite holds `<dir>.lock` until close and takes over a lock whose
 * process is gone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { DataDirInUseError, openPglite } from '../../src/store/index.js';

it('refuses a second open of the same directory until the first is closed', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'sb-lock-')), 'db');
  const first = await openPglite(dir);
  expect(readFileSync(`${dir}.lock`, 'utf8')).toBe(String(process.pid));
  const second = openPglite(dir);
  await expect(second).rejects.toThrow(DataDirInUseError);
  await expect(second).rejects.toThrow(`in use by process ${process.pid} (this one)`);
  // The refused open did not take the lock away from the first.
  expect(readFileSync(`${dir}.lock`, 'utf8')).toBe(String(process.pid));
  await first.query('create table t (n int)');
  await first.close();
  expect(existsSync(`${dir}.lock`)).toBe(false);
  const again = await openPglite(dir);
  expect((await again.query<{ n: number }>('select count(*)::int as n from t')).rows).toEqual([{ n: 0 }]);
  await again.close();
});

it('takes over a lock left by a process that is gone', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'sb-lock-')), 'db');
  const gone = spawnSync(process.execPath, ['-e', '0']).pid;
  writeFileSync(`${dir}.lock`, String(gone));
  const db = await openPglite(dir);
  expect(readFileSync(`${dir}.lock`, 'utf8')).toBe(String(process.pid));
  await db.close();
  // Unreadable contents (a half-written file) count as gone too.
  writeFileSync(`${dir}.lock`, '');
  const db2 = await openPglite(dir);
  await db2.close();
  expect(existsSync(`${dir}.lock`)).toBe(false);
});
