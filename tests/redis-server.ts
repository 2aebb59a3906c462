/** Throwaway redis-server processes for tests that stop, restart or misconfigure Redis. */
import { type ChildProcess, spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { Redis } from 'ioredis';

/** A loopback port nothing listens on now: the system picks it, then it is closed. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A port for a server a test starts at a fixed port of its own choosing (one it restarts on, or
 * whose threads share it): one that binds now, below Linux's ephemeral range (32768–60999), so
 * that no outgoing connection of the test run takes it before the server does. (A fixed port in
 * the ephemeral range did collide: "port 33930 (ingest) on 127.0.0.1 is in use by another process".)
 */
export async function listenablePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

/**
 * Starts redis-server on `port` (no persistence, plus `extra` options) and resolves once it
 * answers PING: a fixed sleep before the first command was flaky in CI.
 */
export async function startRedisServer(port: number, extra: readonly string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...extra],
    {
      stdio: 'ignore',
    },
  );
  for (let tries = 0; ; tries++) {
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === 'PONG') return child;
    } catch (e) {
      if (tries > 200 || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      probe.disconnect();
    }
  }
}
