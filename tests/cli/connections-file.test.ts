/**
 * `serve --connections FILE` is checked whole before anything starts: every problem named by its
 * place, including what the schema cannot say (what each source verifies with, one connection per
 * webhook address, one tenant per key).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectionsFileProblems, readConnectionsFile } from '../../src/cli/connections-file.js';

const KEY = 'a-long-random-secret-of-16-or-more-characters';

describe('connections file', () => {
  it('accepts the README example and each source with what it verifies with', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const example = [...readme.matchAll(/```json\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.includes('"apiKeys"'));
    expect(example).toBeDefined();
    expect(connectionsFileProblems(JSON.parse(example!))).toEqual([]);
    expect(
      connectionsFileProblems({
        connections: [
          { tenant: 'a', id: 'cw', source: 'connectwise' },
          {
            tenant: 'a',
            id: 'cw2',
            source: 'connectwise',
            connectwise: { keyOrigin: 'http://127.0.0.1:8080' },
          },
          { tenant: 'a', id: 'at', source: 'autotask', autotask: { secret: 's' } },
          { tenant: 'a', id: 'h1', source: 'halo', halo: { username: 'u', password: 'p' } },
          { tenant: 'b', id: 'h2', source: 'halo', halo: { urlSecret: 'x' }, selfActors: ['agent-7'] },
          // the same id under another source is another address
          { tenant: 'b', id: 'cw', source: 'halo', halo: { urlSecret: 'y' } },
        ],
        apiKeys: [{ tenant: 'a', key: KEY }],
      }),
    ).toEqual([]);
    expect(connectionsFileProblems({})).toEqual([]);
  });

  it('reads a file that starts with a byte order mark', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sb-conn-')), 'connections.json');
    const file = { connections: [{ tenant: 'a', id: 'at', source: 'autotask', autotask: { secret: KEY } }] };
    writeFileSync(path, `\ufeff${JSON.stringify(file)}`);
    expect(readConnectionsFile(path)).toEqual(file);
  });

  it('names each problem by its place', () => {
    const cases: Array<[unknown, string[]]> = [
      [[], ['(file): must be object']],
      [null, ['(file): must be object']],
      [{ conections: [] }, ['(file): unknown field "conections"']],
      [{ connections: {} }, ['connections: must be array']],
      [
        { connections: [{ id: 'x' }] },
        ['connections[0]: tenant is required', 'connections[0]: source is required'],
      ],
      [
        { connections: [{ tenant: 'a', id: 'x', source: 'servicenow' }] },
        ['connections[0].source: must be one of connectwise, autotask, halo'],
      ],
      [
        { connections: [{ tenant: 'A b', id: 'x/y', source: 'halo', halo: { urlSecret: 's' } }] },
        [
          'connections[0].tenant: must be lowercase letters, digits, - and _ (up to 64), starting with a letter or digit',
          'connections[0].id: must be lowercase letters, digits, - and _ (up to 64), starting with a letter or digit',
        ],
      ],
      [
        {
          connections: [{ tenant: 'a', id: 'x', source: 'autotask', autotask: { secret: 's', Secret: 't' } }],
        },
        ['connections[0].autotask: unknown field "Secret"'],
      ],
      [
        { connections: [{ tenant: 'a', id: 'x', source: 'autotask', autotask: {} }] },
        ['connections[0].autotask: secret is required'],
      ],
      [
        { connections: [{ tenant: 'a', id: 'x', source: 'halo', halo: { username: 'u' } }] },
        ['connections[0].halo: password is required with username'],
      ],
      [
        {
          connections: [
            { tenant: 'a', id: 'x', source: 'connectwise', connectwise: { keyOrigin: 'https://h/x' } },
          ],
        },
        [
          'connections[0].connectwise.keyOrigin: must be an origin (scheme, host and port only), like https://cw.example.com',
        ],
      ],
      [
        {
          connections: [
            { tenant: 'a', id: 'x', source: 'autotask' },
            { tenant: 'a', id: 'y', source: 'halo', halo: {} },
            { tenant: 'b', id: 'x', source: 'autotask', autotask: { secret: 's' }, halo: { urlSecret: 'u' } },
          ],
        },
        [
          "connections[0]: an autotask connection needs autotask.secret (the webhook's secret key)",
          'connections[1]: a halo connection needs halo.username and halo.password, or halo.urlSecret',
          'connections[2].halo: not for a connection whose source is autotask',
          'connections[2]: /v1/hooks/autotask/x is connections[0] already (ids are per source, not per tenant)',
        ],
      ],
      [
        { apiKeys: [{ tenant: 'a', key: 'short' }, { key: KEY }] },
        ['apiKeys[0].key: must NOT have fewer than 16 characters', 'apiKeys[1]: tenant is required'],
      ],
      [
        {
          apiKeys: [
            { tenant: 'a', key: KEY },
            { tenant: 'b', key: KEY },
          ],
        },
        ['apiKeys[1]: the same key as apiKeys[0]'],
      ],
    ];
    for (const [file, problems] of cases)
      expect(connectionsFileProblems(file), JSON.stringify(file)).toEqual(problems);
  });
});
