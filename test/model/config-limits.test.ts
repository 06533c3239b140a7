/**
 * config.json sizes beyond any model are named (file and field) when the config is read, before
 * anything is allocated:
 * hidden_size 1e9 used to end in "heap: cannot grow to 1.9 TiB"; a huge num_hidden_layers or
 * max_position_embeddings built host arrays for minutes first.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConfig } from '../../src/io/hf.js';
import { ConfigError } from '../../src/model/config.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-cfglimits-'));
after(() => rmSync(work, { recursive: true, force: true }));
const fixture = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/fixtures/configs/olmoe-1b-7b-0924.json', import.meta.url)), 'utf8'));

test('sizes larger than any model are refused when config.json is read, naming it and the field', () => {
  const cases: [string, number, RegExp][] = [
    ['hidden_size', 1e9, /field 'hidden_size': 1000000000 is larger than any model/],
    ['num_hidden_layers', 1e9, /field 'num_hidden_layers': 1000000000 is larger than any model/],
    ['max_position_embeddings', 1e9, /field 'max_position_embeddings': 1000000000 is larger than any model/],
    ['max_position_embeddings', 2 ** 23, /field 'max_position_embeddings': 8388608 positions need 4\.0 GiB of RoPE tables at head dim 128/],
    ['num_experts', 1e6, /field 'num_experts': 1000000 is larger than any model/],
    ['intermediate_size', 1e12, /field 'intermediate_size'/],
  ];
  for (const [field, value, re] of cases) {
    const dir = join(work, `${field}-${value}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...fixture, [field]: value }));
    assert.throws(() => readConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(join(dir, 'config.json')) && re.test(e.message), `${field} = ${value}`);
  }
  // The published config itself is fine.
  const ok = join(work, 'ok');
  mkdirSync(ok);
  writeFileSync(join(ok, 'config.json'), JSON.stringify(fixture));
  assert.equal(readConfig(ok).numExperts, 64);
});

test('values nested too deeply to print are ConfigErrors naming the file and field, not RangeErrors', () => {
  // JSON.parse reads 100,000 nested arrays; JSON.stringify of them (in a message, or when a
  // checkpoint saves the config back) overflowed the stack.
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);
  const cases: [string, RegExp][] = [
    ['hidden_act', /field 'hidden_act': .*\(got a deeply nested array\)/],
    ['model_type', /field 'model_type': expected one of .*\(got a deeply nested array\)/],
    ['rope_scaling', /field 'rope_scaling': a deeply nested array is not supported by skymoe/],
    ['rope_parameters', /field 'rope_parameters': a deeply nested array is not supported by skymoe/],
    ['quantization_config', /field 'quantization_config': expected an object, got a deeply nested array/],
    // Unknown fields are written back on save: one JSON cannot write is refused when read.
    ['attention_dropout', /field 'attention_dropout': a deeply nested array cannot be written back to config\.json/],
  ];
  for (const [field, re] of cases) {
    const dir = join(work, `deep-${field}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...fixture, [field]: '@DEEP@' }).replace('"@DEEP@"', deep));
    assert.throws(() => readConfig(dir), (e: Error) => e instanceof ConfigError && e.message.includes(join(dir, 'config.json')) && re.test(e.message), field);
  }
});
