/** The steady (open-loop) HTTP sender of the latency benchmarks. */
import net from 'node:net';

/**
 * An open-loop sender at a steady rate: request i is due at t0 + i / rate (1 ms timer ticks),
 * whatever the answers do, over keep-alive connections (up to 64; a request due while all are
 * busy waits for the first free one, and its latency counts from when it was to leave). autocannon's
 * rate option instead sends each second's quota as fast as it can at the start of the second and
 * then waits, so "2,000 events/s" through it is a burst of 2,000 once a second; both are reported.
 *
 * It writes HTTP/1.1 on plain sockets and reads only the status line and Content-Length: the
 * load tool shares the 2 cores with what it measures, and node:http's client cost about 22% of
 * a core at 2,000 requests/s (this one: about a third of that).
 */
export async function paced(
  port: number,
  rate: number,
  seconds: number,
  body: () => string | { body: string; headers: Record<string, string> },
  headers: Record<string, string> = {
    'content-type': 'application/json',
    authorization: 'Bearer bench-key-0123456789',
  },
): Promise<{ '2xx': number; non2xx: number; latency: { p50: number; p99: number } }> {
  const MAX_SOCKETS = 64;
  const total = rate * seconds;
  const lat: number[] = [];
  let ok = 0;
  let bad = 0;
  let sent = 0;
  let answered = 0;
  const waiting: Array<{ due: number; data: Buffer }> = [];
  const idle: Conn[] = [];
  const all: Conn[] = [];
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });

  const answer = (status: number, due: number) => {
    lat.push(performance.now() - due);
    if (status >= 200 && status < 300) ok++;
    else bad++;
    if (++answered === total) finish();
  };

  class Conn {
    readonly socket: net.Socket;
    private buf: Buffer = Buffer.alloc(0);
    private due = 0;
    busy = false;

    constructor() {
      this.socket = net.connect(port, '127.0.0.1');
      this.socket.setNoDelay(true);
      this.socket.on('data', (d: Buffer) => this.read(d));
      this.socket.on('error', () => {});
      this.socket.on('close', () => {
        // A request in flight on a socket that closed failed.
        if (this.busy) {
          this.busy = false;
          answer(0, this.due);
        }
        const i = all.indexOf(this);
        if (i >= 0) all.splice(i, 1);
        const j = idle.indexOf(this);
        if (j >= 0) idle.splice(j, 1);
      });
    }

    send(due: number, data: Buffer): void {
      this.busy = true;
      this.due = due;
      this.socket.write(data);
    }

    private read(d: Buffer): void {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      for (;;) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = this.buf.subarray(0, end).toString('latin1');
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        const size = end + 4 + (m ? Number(m[1]) : 0);
        if (this.buf.length < size) return;
        const status = Number(head.slice(9, 12));
        this.buf = this.buf.subarray(size);
        this.busy = false;
        answer(status, this.due);
        const next = waiting.shift();
        if (next) this.send(next.due, next.data);
        else idle.push(this);
      }
    }
  }

  const request = (): Buffer => {
    const b = body();
    const data = typeof b === 'string' ? b : b.body;
    const h = { ...headers, ...(typeof b === 'string' ? {} : b.headers) };
    let text = `POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: ${Buffer.byteLength(data)}\r\n`;
    for (const [k, v] of Object.entries(h)) text += `${k}: ${v}\r\n`;
    return Buffer.from(`${text}\r\n${data}`);
  };

  const t0 = performance.now();
  const tick = () => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000));
    while (sent < due) {
      // Latency from this tick (when the request leaves, or would if a connection were free).
      const at = now;
      sent++;
      const data = request();
      const c = idle.pop();
      if (c) c.send(at, data);
      else if (all.length < MAX_SOCKETS) {
        const n = new Conn();
        all.push(n);
        n.send(at, data);
      } else waiting.push({ due: at, data });
    }
    if (sent < total) setTimeout(tick, 1);
  };
  tick();
  await finished;
  for (const c of all) c.socket.destroy();
  lat.sort((a, b) => a - b);
  const at = (q: number) => +lat[Math.min(lat.length - 1, Math.floor(lat.length * q))]!.toFixed(2);
  return { '2xx': ok, non2xx: bad, latency: { p50: at(0.5), p99: at(0.99) } };
}
