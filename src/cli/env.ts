/** Environment for the commands: var/local.env (written by deploy/local/up.sh) under the real one. */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type Db, openDb, openPostgres, SecretBox } from '../store/index.js';

export function commandEnv(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (existsSync('var/local.env')) {
    for (const line of readFileSync('var/local.env', 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) out[m[1]!] = m[2]!;
    }
  }
  return { ...out, ...process.env };
}

/** The rule store's database: DATABASE_URL (in SIGNALBOX_DB_SCHEMA when set), else embedded. */
export function openCommandDb(env = commandEnv()): Promise<Db> {
  if (env.DATABASE_URL && env.SIGNALBOX_DB_SCHEMA)
    return openPostgres({ url: env.DATABASE_URL, schema: env.SIGNALBOX_DB_SCHEMA });
  return openDb({ DATABASE_URL: env.DATABASE_URL });
}

/**
 * The key that encrypts connection secrets: SIGNALBOX_SECRET_KEY (64 hex characters or base64 of
 * 32 bytes), else var/secret.key, created on first use (mode 0600) for the embedded setup.
 */
export function secretBox(env = commandEnv()): SecretBox {
  if (env.SIGNALBOX_SECRET_KEY) return SecretBox.fromText(env.SIGNALBOX_SECRET_KEY);
  const path = 'var/secret.key';
  if (!existsSync(path)) {
    mkdirSync('var', { recursive: true });
    writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
  }
  return SecretBox.fromText(readFileSync(path, 'utf8'));
}

/** Numeric settings from the environment that must be positive whole numbers when set. */
const POSITIVE_INTEGERS = ['SIGNALBOX_ARCHIVE_DAYS', 'SIGNALBOX_TENANT_RATE'];

/** The first malformed setting of the environment, as a message; undefined when all are fine. */
export function envProblem(env: Record<string, string | undefined>): string | undefined {
  for (const name of POSITIVE_INTEGERS) {
    const v = env[name];
    if (v !== undefined && v !== '' && !/^[1-9]\d{0,8}$/.test(v))
      return `${name} must be a positive whole number, not ${JSON.stringify(v)}`;
  }
  return undefined;
}
