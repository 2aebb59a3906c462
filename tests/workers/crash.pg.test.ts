/**
 * A worker process killed with SIGKILL in the middle of runs: another worker resumes them. Every
 * run finishes, every step reaches the receiver, no step that had completed is sent again, and a
 * repeated in-flight step carries the same idempotency key.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Receiver } from './fakes/receiver.js';
import { event, eventually, type Harness, harness } from './harness.js';

let h: Harness;
let rx: Receiver;

beforeAll(async () => {
  rx = await new Receiver().start();
  rx.delayMs = 150;
  h = await harness('crash');
});
afterAll(async () => {
  await h?.close();
  await rx?.close();
});

it('runs survive a SIGKILL of their worker', async () => {
  await h.rule({
    id: 'three',
    actions: [0, 1, 2].map((i) => ({
      type: 'webhook',
      with: { url: `${rx.url}/step${i}`, body: { run: '{{ meta.run.id }}' } },
    })),
  });
  const a = await h.spawn({ SB_TEST_LOCK_MS: '2000', SB_TEST_CONCURRENCY: '10' });
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await h.enqueue('three', event(`k-${i}`, { id: i })));
  // Kill it once it is well into the runs: some done, some mid-step, some not started.
  await eventually('requests in flight', () => rx.requests.length >= 25);
  a.kill('SIGKILL');
  await new Promise((r) => a.once('exit', r));
  // Taken once the process is gone: a request it sent just before the signal is recorded by the
  // receiver a moment later (it failed once at an equal millisecond), and nothing comes from the
  // new worker before it is started below.
  const killedAt = Date.now();
  await h.spawn({ SB_TEST_LOCK_MS: '2000', SB_TEST_CONCURRENCY: '10' });
  const runs: Array<{ status: string }> = [];
  for (const id of ids) runs.push(await h.waitRun(id, undefined, 60_000));
  expect(runs.every((r) => r.status === 'completed')).toBe(true);

  let repeated = 0;
  for (const id of ids) {
    const mine = rx.requests.filter((r) => JSON.parse(r.body).run === id);
    // Every step reached the receiver, and only ever with the run's own key for that step.
    const keys = new Map<string, number>();
    for (const r of mine)
      keys.set(
        String(r.headers['idempotency-key']),
        (keys.get(String(r.headers['idempotency-key'])) ?? 0) + 1,
      );
    expect([...keys.keys()].sort()).toEqual([`${id}:0`, `${id}:1`, `${id}:2`]);
    for (const i of [0, 1, 2])
      expect(mine.filter((r) => r.path === `/step${i}`).length).toBeGreaterThanOrEqual(1);
    // A step sent twice was the one in flight when the worker died: its first request came
    // before the kill, and no later step of the run had been sent before the kill.
    const twice = [...keys].filter(([, n]) => n > 1).map(([k]) => Number(k.split(':').at(-1)));
    expect(twice.length).toBeLessThanOrEqual(1);
    for (const step of twice) {
      repeated++;
      const first = mine.find((r) => r.path === `/step${step}`)!;
      expect(first.at).toBeLessThanOrEqual(killedAt);
      const laterBeforeKill = mine.filter((r) => Number(r.path.slice(5)) > step && r.at < killedAt);
      expect(laterBeforeKill).toHaveLength(0);
    }
  }
  // The kill did land mid-step (otherwise this test proves little).
  expect(repeated).toBeGreaterThan(0);
}, 120_000);
