/**
 * `skymoe chat` as a user runs it with piped input: replies stream on stdout, each turn's prompt
 * holds the whole conversation (it grows), /reset starts over (the same prompt as the first turn,
 * the same greedy reply), /exit leaves with code 0; a bad flag is named.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'skymoe-chat-'));
after(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '1' };

function skymoe(args: string[], input = '') {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env, input, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('chat: streamed replies, the conversation grows each turn, /reset starts over, /exit leaves', () => {
  const model = join(work, 'm');
  assert.equal(skymoe(['init', '--preset', 'tiny', '--out', model, '--seed', '3']).code, 0);
  const r = skymoe(['chat', '--model', model, '--temperature', '0', '--max-tokens', '4', '--system', 'Hi.'], 'Call me.\nWhy?\n/reset\nCall me.\n/exit\nnever read\n');
  assert.equal(r.code, 0, r.err);
  const turns = [...r.err.matchAll(/\[(\d+) prompt tokens, (\d+) generated in [\d.]+ s, stopped by (\w+)\]/g)].map((m) => ({ prompt: Number(m[1]), generated: Number(m[2]) }));
  assert.equal(turns.length, 3, r.err);
  assert.ok(turns[1]!.prompt > turns[0]!.prompt + turns[0]!.generated, 'the second turn carries the first question and reply');
  assert.equal(turns[2]!.prompt, turns[0]!.prompt, '/reset: the third turn sees only the system message and its question');
  assert.match(r.err, /\[conversation reset\]/);
  const replies = r.out.split('\n');
  assert.ok(turns[0]!.generated > 0 && replies[0]!.length > 0, 'the first reply is printed');
  // Greedy, same conversation: the reply after /reset is the first one again.
  assert.equal(r.out.trimEnd().split('\n').at(-1), replies[0]);
});

test('chat: a missing model is named, nothing on stdout', () => {
  const r = skymoe(['chat', '--model', join(work, 'nope')]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /nope/);
  assert.equal(r.out, '');
});
