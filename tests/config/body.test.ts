/** body.ts: the offset of the first byte that is not UTF-8, and the header checks. */
import { isUtf8 } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { BodyError, bodyCharset, bodyCoding, invalidLines, invalidUtf8 } from '../../src/config/body.js';

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('invalidUtf8', () => {
  it('finds the first byte that starts no valid sequence', () => {
    expect(invalidUtf8(Buffer.from('plain ASCII, é, €, 𝄞'))).toBe(-1);
    expect(invalidUtf8(bytes(0x41, 0xc0, 0x80))).toBe(1); // overlong
    expect(invalidUtf8(bytes(0xe0, 0x80, 0x80))).toBe(0); // overlong
    expect(invalidUtf8(bytes(0x41, 0x42, 0xed, 0xa0, 0x80))).toBe(2); // a surrogate
    expect(invalidUtf8(bytes(0xf4, 0x90, 0x80, 0x80))).toBe(0); // past U+10FFFF
    expect(invalidUtf8(bytes(0xe2, 0x82, 0xac, 0xe2, 0x82))).toBe(3); // cut short
    expect(invalidUtf8(bytes(0x80))).toBe(0); // a lone continuation
    expect(invalidUtf8(bytes(0xf8, 0x88, 0x80, 0x80, 0x80))).toBe(0);
  });

  it('agrees with Node’s validator on random bytes: all before the offset is valid, nothing valid starts at it', () => {
    // a small deterministic generator: lead bytes, continuations and ASCII in UTF-8-like runs
    let seed = 42;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const pool = [0x41, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xc0];
    for (let n = 0; n < 5_000; n++) {
      const b = Uint8Array.from({ length: 1 + (next() % 9) }, () => pool[next() % pool.length]!);
      const at = invalidUtf8(b);
      expect(at === -1).toBe(isUtf8(b));
      if (at === -1) continue;
      expect(isUtf8(b.subarray(0, at))).toBe(true);
      for (let k = 1; k <= 4; k++) expect(isUtf8(b.subarray(at, at + k))).toBe(false);
    }
  });

  it('names the NDJSON lines that hold such bytes, with the offset in the line', () => {
    const body = Buffer.concat([
      Buffer.from('ok\nM'),
      bytes(0xfc),
      Buffer.from('ller\n\nalso ok\n'),
      bytes(0xff),
    ]);
    expect([...invalidLines(body)]).toEqual([
      [1, 1],
      [4, 0],
    ]);
  });
});

describe('header checks', () => {
  const status = (f: () => unknown) => {
    try {
      f();
      return 'ok';
    } catch (e) {
      return e instanceof BodyError ? e.status : e;
    }
  };
  it('content codings: one of gzip, deflate, br (and identity) where compression is taken; none on webhooks', () => {
    expect(bodyCoding('GZip', true)).toBe('gzip');
    expect(bodyCoding('x-gzip', true)).toBe('gzip');
    expect(bodyCoding('identity', false)).toBe('identity');
    expect(bodyCoding('br, identity', true)).toBe('br');
    expect(status(() => bodyCoding('gzip, br', true))).toBe(415);
    expect(status(() => bodyCoding('zstd', true))).toBe(415);
    expect(status(() => bodyCoding('gzip', false))).toBe(415);
  });
  it('charsets: UTF-8 by any of its names is the fast path; others need a decoder', () => {
    expect(bodyCharset('application/json')).toBeUndefined();
    expect(bodyCharset('application/json; charset=UTF-8')).toBeUndefined();
    expect(bodyCharset('application/json; charset="utf8"')).toBeUndefined();
    expect(bodyCharset('application/json; charset=unicode-1-1-utf-8')).toBeUndefined();
    expect(bodyCharset('application/json; Charset=Windows-1252')).toBe('windows-1252');
    expect(status(() => bodyCharset('application/json; charset=ebcdic-xx'))).toBe(415);
  });
});
