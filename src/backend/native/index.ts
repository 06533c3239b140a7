/**
 * The `native` backend: a Node-API addon (./csrc, built by scripts/build-native.mjs) with packed
 * AVX-512 / AVX2 / portable GEMM micro-kernels, flash-style attention and fused row kernels on its
 * own pthread pool.
 *
 * Memory (no copy): the addon reserves one large virtual range with a fixed base address and hands
 * JS external ArrayBuffers over it; when the heap grows, JS gets a longer ArrayBuffer over the same
 * base (the old one stays valid), so tensors written from JS are the bytes the C kernels read.
 * Kernels receive byte offsets into that range, like every other backend.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Backend, BackendError, type Kernels, type MappedFile } from '../backend.js';
import { Heap, HeapError, type HeapStorage, fmtBytes } from '../heap.js';
import { HeapBackend } from '../heap-backend.js';
import { type AddonHandle, type NativeAddon, makeNativeKernels } from './kernels.js';

export type NativeIsa = 'avx512' | 'avx2' | 'generic';

export interface NativeBackendOptions {
  /** Kernel threads, counting the calling thread (default 1). */
  threads?: number;
  /** Force an instruction set (default: SKYMOE_NATIVE_ISA, else the best the CPU has). For tests. */
  isa?: NativeIsa;
  /** Initial heap length in bytes (default 64 MiB). */
  initialBytes?: number;
  /** Largest heap size in bytes (default and limit: min(RAM, 4 GiB), see MAX_HEAP_BYTES). */
  maxBytes?: number;
  /**
   * The arithmetic of row-invariant products (serving) with bf16 and fp8 weights: 'f32' (default:
   * the weights decoded to fp32, fp32 activations) or 'bf16' (activations rounded to bf16, the
   * products accumulated in fp32 on Intel AMX, as bf16 inference engines compute; refused where
   * the CPU or kernel has no AMX-BF16). Default: SKYMOE_COMPUTE, else 'f32'.
   */
  compute?: NativeCompute;
}

export type NativeCompute = 'f32' | 'bf16';

/**
 * Heap limit: Node 20's napi_create_external_arraybuffer goes through a node::Buffer, which
 * refuses more than 2^32 bytes (ERR_BUFFER_TOO_LARGE), so the shared view, and the heap, stop at
 * 4 GiB. Offsets are 64-bit everywhere else (kernels, Heap, the js views), ready for a runtime
 * that lifts it.
 */
export const MAX_HEAP_BYTES = 2 ** 32;
const GROW_STEP = 1 << 16;
/** The addon node-gyp builds; SKYMOE_NATIVE_ADDON overrides the path (e.g. a build elsewhere). */
const ADDON_PATH = process.env.SKYMOE_NATIVE_ADDON || fileURLToPath(new URL('../../../../build/Release/skymoe_native.node', import.meta.url));

let loaded: { addon: NativeAddon } | { error: string } | null = null;

function loadAddon(): { addon: NativeAddon } | { error: string } {
  if (loaded) return loaded;
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
    loaded = { addon };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]!;
    loaded = {
      error: /cannot find module/i.test(msg)
        ? `not built: ${ADDON_PATH} is missing (run \`node scripts/build-native.mjs\`; needs a C compiler)`
        : `not available: the addon failed to load: ${msg}`,
    };
  }
  return loaded;
}

/** Whether the native backend can run here, its best ISA, or why not. */
export function nativeInfo(): { available: boolean; isa?: string; reason?: string } {
  const l = loadAddon();
  if ('error' in l) return { available: false, reason: l.error };
  return { available: true, isa: l.addon.detect() };
}

/** The heap's storage: external ArrayBuffers over the addon's fixed region, longer as it grows. */
export class NativeHeapStorage implements HeapStorage {
  readonly maxBytes: number;
  private buf: ArrayBuffer;
  constructor(private readonly addon: NativeAddon, private readonly handle: AddonHandle, initialBytes: number, maxBytes: number) {
    this.maxBytes = maxBytes;
    this.buf = addon.view(handle, Math.min(maxBytes, Math.max(GROW_STEP, roundUp(initialBytes, GROW_STEP))));
  }
  get buffer(): ArrayBuffer {
    return this.buf;
  }
  grow(bytes: number): void {
    const have = this.buf.byteLength;
    if (bytes <= have) return;
    if (bytes > this.maxBytes) {
      throw new HeapError(`heap: cannot grow to ${fmtBytes(bytes)}; the native heap is limited to ${fmtBytes(this.maxBytes)}`);
    }
    // Geometric growth; the pages behind the new length are only touched when used.
    const target = Math.min(this.maxBytes, roundUp(Math.max(bytes, Math.floor(have * 1.5)), GROW_STEP));
    this.buf = this.addon.view(this.handle, target);
  }
}

export class NativeBackend extends HeapBackend {
  readonly name = 'native' as const;
  readonly threads: number;
  readonly kernels: Kernels;
  readonly isa: NativeIsa;
  /** 'bf16' when serving products with bf16 / fp8 weights run on AMX (see NativeBackendOptions.compute). */
  readonly compute: NativeCompute;
  private disposed = false;

  constructor(private readonly addon: NativeAddon, private readonly handle: AddonHandle, storage: NativeHeapStorage) {
    super(new Heap(storage));
    const info = addon.info(handle);
    this.threads = info.threads;
    this.isa = info.isa as NativeIsa;
    this.compute = info.amx ? 'bf16' : 'f32';
    this.kernels = makeNativeKernels(addon, handle);
  }

  describe(): string {
    return `native ${this.isa} threads=${this.threads}${this.compute === 'bf16' ? ' compute=bf16 (amx)' : ''}`;
  }

  /** Map a file read-only; kernels read it in place (see Backend.mapFile). */
  mapFile(path: string): MappedFile {
    const { offset, bytes } = this.addon.mapFile(this.handle, path);
    let mapped = true;
    return {
      ptr: offset,
      bytes,
      unmap: () => {
        if (!mapped || this.disposed) return;
        mapped = false;
        this.addon.unmapFile(this.handle, offset);
      },
    };
  }

  /**
   * Measured fp32 FMA throughput of this backend's threads in GFLOP/s (median of five ~20 ms runs of
   * independent FMA chains in the selected ISA): the denominator of a benchmark's peak_pct.
   */
  measureFmaPeak(): number {
    let iters = 1 << 16;
    for (;;) {
      const t0 = performance.now();
      this.addon.fmaProbe(this.handle, iters);
      if (performance.now() - t0 > 20 || iters > 2 ** 30) break;
      iters *= 2;
    }
    const rates: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      const flops = this.addon.fmaProbe(this.handle, iters);
      rates.push(flops / ((performance.now() - t0) * 1e6));
    }
    return rates.sort((a, b) => a - b)[2]!;
  }

  /**
   * Memory bandwidth of this backend's threads in GB/s: the median of `passes` stream reads of a
   * buffer of `bytes` (larger than the last-level cache). The ceiling a decode benchmark divides by.
   */
  measureStreamBandwidth(bytes = 2 ** 30, passes = 7): number {
    return (this.addon.memProbe as (h: AddonHandle, b: number, p: number) => number)(this.handle, bytes, passes);
  }

  override async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.addon.dispose(this.handle);
  }
}

/**
 * Create a native backend; throws a BackendError saying "not built" or "not available" (and why)
 * when the addon is missing, fails to load, or the forced ISA is not supported by this CPU.
 *
 * @example
 * const be = createNativeBackend({ threads: 2 });
 * const a = be.alloc(16), c = be.alloc(16);
 * be.write(a, new Float32Array([1, 2, 3, 4]));
 * be.kernels.matmul(a, a, c, 2, 2, 2, false, false, 1, 0, 0, 0, 0); // c = a @ a
 * be.readF32(c, 4); // Float32Array [7, 10, 15, 22]
 * await be.dispose();
 */
export function createNativeBackend(opts: NativeBackendOptions = {}): NativeBackend {
  const l = loadAddon();
  if ('error' in l) throw new BackendError(`native backend ${l.error}`);
  const threads = opts.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) throw new BackendError(`native: threads=${threads}: expected a positive integer`);
  const isa = opts.isa ?? (process.env.SKYMOE_NATIVE_ISA || '');
  const maxBytes = Math.min(opts.maxBytes ?? MAX_HEAP_BYTES, MAX_HEAP_BYTES, roundUp(totalmem(), GROW_STEP));
  let handle: AddonHandle;
  try {
    handle = l.addon.create(threads, isa, maxBytes);
  } catch (e) {
    throw new BackendError(`native backend not available${isa ? ` with isa=${isa}` : ''}: ${(e as Error).message}`);
  }
  const compute = opts.compute ?? (process.env.SKYMOE_COMPUTE || 'f32');
  if (compute !== 'f32' && compute !== 'bf16') {
    l.addon.dispose(handle);
    throw new BackendError(`native: compute=${compute}${opts.compute ? '' : ' (SKYMOE_COMPUTE)'}: expected f32 or bf16`);
  }
  if (compute === 'bf16' && !l.addon.setCompute(handle, 1)) {
    l.addon.dispose(handle);
    throw new BackendError(`native: compute=bf16 needs Intel AMX-BF16 (a Sapphire Rapids or later Xeon, Linux 5.16+); this CPU or kernel has none: use compute=f32`);
  }
  const storage = new NativeHeapStorage(l.addon, handle, opts.initialBytes ?? 64 * 2 ** 20, maxBytes);
  return new NativeBackend(l.addon, handle, storage);
}

function roundUp(n: number, step: number): number {
  return Math.ceil(n / step) * step;
}
