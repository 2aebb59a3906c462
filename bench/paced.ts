/** The steady (open-loop) HTTP sender of the latency benchmarks. */
import http from 'node:http';

/**
 * An open-loop sender at a steady rate: request i leaves at t0 + i / rate (1 ms timer ticks),
 * whatever the answers do, over keep-alive connections. autocannon's rate option instead sends
 * each second's quota as fast as it can at the start of the second and then waits, so "2,000
 * events/s" through it is a burst of 2,000 once a second; both are reported.
 */
export async function paced(
  port: number,
  rate: number,
  seconds: number,
  body: () => string | { body: string; headers: Record<string, string> },
  headers: Record<string, string> = { 'content-type': 'application/json', authorization: 'Bearer bench-key' },
): Promise<{ '2xx': number; non2xx: number; latency: { p50: number; p99: number } }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const total = rate * seconds;
  const lat: number[] = [];
  let ok = 0;
  let bad = 0;
  let sent = 0;
  let answered = 0;
  const t0 = performance.now();
  await new Promise<void>((done) => {
    const fire = () => {
      const t = performance.now();
      const b = body();
      const data = typeof b === 'string' ? b : b.body;
      const extra = typeof b === 'string' ? {} : b.headers;
      const req = http.request(
        {
          agent,
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/events',
          headers: { ...headers, ...extra, 'content-length': Buffer.byteLength(data) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            lat.push(performance.now() - t);
            if (res.statusCode! >= 200 && res.statusCode! < 300) ok++;
            else bad++;
            if (++answered === total) done();
          });
        },
      );
      req.on('error', () => {
        bad++;
        if (++answered === total) done();
      });
      req.end(data);
    };
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
      while (sent < due) {
        sent++;
        fire();
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  agent.destroy();
  lat.sort((a, b) => a - b);
  const at = (q: number) => +lat[Math.min(lat.length - 1, Math.floor(lat.length * q))]!.toFixed(2);
  return { '2xx': ok, non2xx: bad, latency: { p50: at(0.5), p99: at(0.99) } };
}
