#!/usr/bin/env node
/**
 * Completes package-lock.json for the optional, platform-specific packages that the registry
 * these machines reach does not serve (it answers 404 for, e.g., @biomejs/cli-darwin-arm64).
 * npm then leaves them out of the lock file, and `npm ci` refuses that same lock file ("Missing:
 * … from lock file"). Each missing optional dependency is recorded with the os/cpu/libc its name
 * declares, so `npm ci` knows it does not apply here and skips it without fetching it.
 *
 *   npm install && node scripts/fix-lock.mjs      (npm run lock)
 */
import { readFileSync, writeFileSync } from 'node:fs';

const file = 'package-lock.json';
const lock = JSON.parse(readFileSync(file, 'utf8'));
const pkgs = lock.packages;

function platformOf(name) {
  const n = name.toLowerCase();
  const os = ['darwin', 'win32', 'linux', 'android', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix'].find((o) => n.includes(o));
  const cpu = ['arm64', 'x64', 'ia32', 'arm', 's390x', 'ppc64', 'riscv64', 'loong64', 'mips64el'].find((c) =>
    new RegExp(`(^|[-/_])${c}($|[-_])`).test(n),
  );
  const libc = n.includes('musl') ? 'musl' : n.includes('gnu') ? 'glibc' : undefined;
  return { os, cpu, libc };
}

let added = 0;
for (const [path, meta] of Object.entries(pkgs)) {
  for (const [dep, range] of Object.entries(meta.optionalDependencies ?? {})) {
    const base = path === '' ? '' : `${path}/`;
    const nested = `${base}node_modules/${dep}`;
    const hoisted = `node_modules/${dep}`;
    if (pkgs[nested] || pkgs[hoisted]) continue;
    const { os, cpu, libc } = platformOf(dep);
    if (!os && !cpu) {
      console.warn(`skipped ${dep}: no platform in its name`);
      continue;
    }
    const entry = { version: range.replace(/^[\^~=]/, ''), optional: true };
    if (os) entry.os = [os];
    if (cpu) entry.cpu = [cpu];
    if (libc) entry.libc = [libc];
    pkgs[hoisted] = entry;
    added++;
  }
}
// Keep keys sorted as npm writes them.
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)));
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`fix-lock: recorded ${added} optional platform packages`);
