/** `signalbox demo` (the README's first command) end to end: rules, six PSA webhooks, queued runs. */
import { execFile } from 'node:child_process';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';

const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;
const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_demo_${process.pid}_${Date.now().toString(36)}`;

afterAll(async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
});

it('applies the example rules, takes every example webhook and queues one run per match', async () => {
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'demo'],
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: url, SIGNALBOX_DB_SCHEMA: schema } },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('5 rules: 5 changed');
  expect(r.stdout.match(/→ 202 1 accepted/g)).toHaveLength(6);
  expect(r.stdout).toContain('matched: cw-waiting-customer, printer-tickets');
  expect(r.stdout).toContain('matched: at-ticket-complete, printer-tickets');
  expect(r.stdout).toContain('matched: halo-ticket-closed, printer-tickets');
  expect(r.stdout).toContain('· 12 runs queued');
  // The workers ran every queued run, with templates rendered from each PSA's event.
  expect(r.stdout).toContain('· the workers ran them');
  expect(r.stdout.match(/^ {2}completed /gm)).toHaveLength(12);
  expect(r.stdout).toContain('send the satisfaction survey: https://survey.example.com/?ticket=351181');
  expect(r.stdout).toContain('"acknowledgement":"We have your ticket #4242: Printer offline - 2nd floor"');
});
