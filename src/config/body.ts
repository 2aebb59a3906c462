/**
 * A request body as text, for the ingest and the admin API: its Content-Encoding undone (generic
 * events only) and its charset decoded. Checked from the headers before the body is read (`bodyCoding`, `bodyCharset`), so
 * that a body that cannot be read is refused at once with 415.
 *
 * - Content-Encoding: `/v1/events` takes `gzip` (or `x-gzip`), `deflate` and `br`, as log
 *   shippers send NDJSON; the decoded body is held to the same limit as a plain one. Webhooks are
 *   verified on the bytes as sent, and no PSA compresses them: they take none.
 * - Charset: UTF-8 unless Content-Type names another (`; charset=iso-8859-1`), decoded by the
 *   WHATWG decoder of that name; one it does not know is refused. A UTF-8 byte order mark is
 *   dropped (RFC 8259 lets a parser ignore it; Windows tools write it).
 */
import { isUtf8 } from 'node:buffer';
import { promisify, TextDecoder } from 'node:util';
import { brotliDecompress, gunzip, inflate, inflateRaw } from 'node:zlib';

export type Coding = 'identity' | 'gzip' | 'deflate' | 'br';

/** What went wrong reading a body: the HTTP status and the message to answer with. */
export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

const CODINGS: Readonly<Record<string, Coding>> = {
  identity: 'identity',
  gzip: 'gzip',
  'x-gzip': 'gzip',
  deflate: 'deflate',
  br: 'br',
};

/**
 * The one content coding of a Content-Encoding header (`identity` when there is none), or a
 * BodyError(415) when it names one this route does not take, or several.
 */
export function bodyCoding(header: string, compressed: boolean): Coding {
  const list = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (list.length === 0) return 'identity';
  const coding = list.length === 1 ? CODINGS[list[0]!] : undefined;
  if (!compressed) {
    throw new BodyError(
      415,
      `Content-Encoding ${JSON.stringify(header)}: webhook bodies are read as sent, uncompressed`,
    );
  }
  if (coding === undefined) {
    throw new BodyError(
      415,
      `Content-Encoding ${JSON.stringify(header)} is not supported: send gzip, deflate, br or none`,
    );
  }
  return coding;
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;
const decoders = new Map<string, TextDecoder>();

/**
 * The charset a Content-Type names, when it is not UTF-8 (undefined for UTF-8 or none), or a
 * BodyError(415) for one there is no decoder of.
 */
export function bodyCharset(contentType: string): string | undefined {
  if (!contentType.includes(';')) return undefined;
  const label = CHARSET.exec(contentType)?.[1]?.toLowerCase();
  if (label === undefined || label === 'utf-8' || label === 'utf8') return undefined;
  if (!decoders.has(label)) {
    let d: TextDecoder;
    try {
      d = new TextDecoder(label);
    } catch {
      throw new BodyError(415, `charset ${JSON.stringify(label)} is not supported: send UTF-8`);
    }
    // A label of UTF-8 by another name (unicode-1-1-utf-8): the fast path reads it.
    if (d.encoding === 'utf-8') return undefined;
    decoders.set(label, d);
  }
  return label;
}

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const inflateRawAsync = promisify(inflateRaw);
const brotliAsync = promisify(brotliDecompress);

/**
 * Undoes a content coding, in the thread pool, into at most `maxBytes` bytes: past them, a
 * BodyError(413); a body that does not decode, a BodyError(400).
 */
export async function decompress(body: Buffer, coding: Coding, maxBytes: number): Promise<Buffer> {
  if (coding === 'identity') return body;
  const opts = { maxOutputLength: maxBytes };
  try {
    if (coding === 'gzip') return await gunzipAsync(body, opts);
    if (coding === 'br') return await brotliAsync(body, opts);
    // HTTP's deflate is zlib-wrapped; some senders send the raw stream.
    return await inflateAsync(body, opts).catch((e: NodeJS.ErrnoException) =>
      e.code === 'ERR_BUFFER_TOO_LARGE' ? Promise.reject(e) : inflateRawAsync(body, opts),
    );
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new BodyError(413, `request body over the limit of ${maxBytes} bytes once decompressed`);
    }
    throw new BodyError(400, `the body is not valid ${coding}: ${(e as Error).message}`);
  }
}

/**
 * A body as text. UTF-8 (charset undefined) is decoded with U+FFFD for bytes that are not
 * UTF-8: callers that refuse those check `invalidUtf8` first.
 */
export function bodyText(body: Buffer, charset: string | undefined): string {
  if (charset !== undefined) return decoders.get(charset)!.decode(body);
  const bom = body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf;
  return body.toString('utf8', bom ? 3 : 0);
}

/** The offset of the first byte that is not part of valid UTF-8, or -1 when all of it is. */
export function invalidUtf8(bytes: Uint8Array): number {
  if (isUtf8(bytes)) return -1;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // The sequence's length and the range of its second byte (RFC 3629's table).
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 3;
      if (b === 0xe0) lo = 0xa0;
      else if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 4;
      if (b === 0xf0) lo = 0x90;
      else if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + n > bytes.length) return i;
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k < n; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += n;
  }
  return -1;
}

/** The lines of a body (split at \n) that hold bytes not UTF-8: index → offset in the line. */
export function invalidLines(body: Buffer): Map<number, number> {
  const out = new Map<number, number>();
  for (let start = 0, index = 0; start < body.length; index++) {
    let nl = body.indexOf(0x0a, start);
    if (nl < 0) nl = body.length;
    const at = invalidUtf8(body.subarray(start, nl));
    if (at >= 0) out.set(index, at);
    start = nl + 1;
  }
  return out;
}

/** The answer to bytes that are not UTF-8 at `at` of the body or of a line. */
export function notUtf8(at: number, of: 'body' | 'line'): string {
  return `not valid UTF-8 at byte ${at} of the ${of}: send UTF-8, or name the charset in Content-Type`;
}

/** Text without a leading byte order mark (files saved by Windows editors start with one). */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
