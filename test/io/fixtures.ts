/** Helpers for io tests: temp directories and safetensors files assembled by hand, byte by byte. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsError } from '../../src/io/index.js';

/** A fresh temp directory, removed by the returned cleanup. */
export function tempDir(prefix = 'skymoe-io-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A safetensors file from a header (object or literal JSON text) and a data buffer, written
 * without the library's writer: u64 LE length, header bytes, spaces, data.
 */
export function handMade(header: unknown, data: Uint8Array, opts: { pad?: number; lengthOverride?: bigint } = {}): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = new TextEncoder().encode(text + ' '.repeat(opts.pad ?? 0));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, opts.lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

export function writeHandMade(path: string, header: unknown, data: Uint8Array, opts: { pad?: number; lengthOverride?: bigint } = {}): string {
  writeFileSync(path, handMade(header, data, opts));
  return path;
}

/** Assert `fn` throws a SafetensorsError whose message names `path` and matches `fault`. */
export function assertSafetensorsError(fn: () => unknown, path: string, fault: RegExp): SafetensorsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected a SafetensorsError matching ${fault}, nothing was thrown`);
  assert.ok(caught instanceof SafetensorsError, `expected a SafetensorsError, got ${String(caught)}`);
  assert.ok(caught.message.includes(path), `message does not name ${path}: ${caught.message}`);
  assert.match(caught.message, fault);
  return caught;
}

/** Little-endian float32 bytes. */
export function f32Bytes(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
