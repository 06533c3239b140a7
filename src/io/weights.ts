/**
 * Model weights from a checkpoint in the form inference wants: each matrix in its stored dtype
 * (f32, bf16, f16, or FP8 E4M3 with its `weight_scale`), read in place from the memory-mapped
 * safetensors files where the backend can map them (native), copied byte for byte into the heap
 * where it cannot (wasm, js). Experts stay one tensor per expert, as the file stores them: the
 * grouped product takes a table of per-expert pointers, so nothing is stacked or copied.
 * Norms and the router are small and always decoded to f32 (they stay high precision in every
 * format). `dtype` converts on load: 'f32' decodes everything into trainable heap tensors,
 * 'bf16' and 'fp8' re-encode matrices into the heap (embeddings and lm_head stay bf16 under fp8,
 * as in Skywork-MoE-Base-FP8).
 *
 * With a tensor-parallel shard (model/shard.ts), only this rank's slice of each split weight is
 * held: a row slice of a mapped matrix is read in place (q/k/v, gate/up, etp's w1/w3), a column
 * slice (o_proj, down, etp's w2) is copied into the heap in its stored dtype, and under edp only
 * this rank's experts are read. Converted weights are converted whole, then cut (fp8's per-tensor
 * scale is the whole tensor's, as on one rank).
 */
import type { Backend } from '../backend/backend.js';
import type { ModelConfig } from '../model/config.js';
import { shardPlan, slicedShape, sliceValues, type SliceSpec, type TensorShard } from '../model/shard.js';
import { parameterSpecs, type Param } from '../model/skywork-moe.js';
import { bf16Bytes, quantizeFp8 } from '../quant/fp8.js';
import * as T from '../tensor/index.js';
import { ExpertWeights, MappedRegion, Weight, WeightDType } from '../tensor/index.js';
import { WEIGHT_DTYPE_BYTES } from '../backend/backend.js';
import { DTYPE_BYTES, type StorageDType } from './dtypes.js';
import { CheckpointError, expertTensorNames } from './layout.js';
import type { TensorReader } from './safetensors.js';
import { openCheckpoint, SINGLE_FILE } from './sharded.js';
import { join } from 'node:path';

/** How weights are held after loading. */
export type LoadDType = 'auto' | 'f32' | 'bf16' | 'fp8';
export const LOAD_DTYPES: readonly LoadDType[] = ['auto', 'f32', 'bf16', 'fp8'];

export interface LoadOptions {
  /** 'auto' (default): the stored dtype, mapped where possible; 'f32': trainable heap tensors; 'bf16', 'fp8': converted. */
  dtype?: LoadDType;
  /** Map the files when the backend can (default true); false copies into the heap. */
  map?: boolean;
  /** Progress: tensors done of total. */
  onProgress?: (done: number, total: number) => void;
  /** Tensor parallelism: load only this rank's slices of the split weights. */
  shard?: TensorShard;
}

export interface LoadReport {
  /** Bytes of weights read in place from mapped files. */
  mappedBytes: number;
  /** Bytes of weights in the heap (copied, decoded or converted). */
  heapBytes: number;
  /** Files mapped. */
  mappedFiles: number;
  /** Stored dtypes of the matrices as loaded, with their bytes. */
  bytesByDtype: Record<string, number>;
}

/** Tensors next to weights that carry no weights skymoe uses (rotary caches; static activation and KV scales). */
export const IGNORED_TENSORS = /(^|\.)(rotary_emb\.inv_freq|input_scale|act_scale|k_scale|v_scale|kv_scale)$/;

const STORED: Partial<Record<StorageDType, WeightDType>> = { F32: WeightDType.F32, BF16: WeightDType.BF16, F16: WeightDType.F16, F8_E4M3: WeightDType.F8E4M3 };

/**
 * A tensor's scale (`<name>_scale`, e.g. `...weight_scale`): a scalar, or one per row. Only FP8
 * tensors have one: a scale beside any other dtype is refused (applied by one load path and not
 * another, it would make the model depend on --dtype).
 */
export function readScale(reader: TensorReader, name: string, rows: number, where: string): { scale: number; rowScale?: Float32Array; name?: string } {
  const sname = `${name}_scale`;
  if (!reader.has(sname)) return { scale: 1 };
  const stored = reader.info(name).dtype;
  if (stored !== 'F8_E4M3') throw new CheckpointError(`tensor '${name}' is ${stored} but has a scale '${sname}' (scales belong to FP8 weights)`, where);
  const v = reader.readF32(sname);
  if (v.length === 1) {
    if (!Number.isFinite(v[0]!) || v[0]! <= 0) throw new CheckpointError(`'${sname}' is ${v[0]}, expected a positive finite scale`, where);
    return { scale: v[0]!, name: sname };
  }
  if (v.length === rows) {
    if (!v.every((x) => Number.isFinite(x) && x > 0)) throw new CheckpointError(`'${sname}' has a scale that is not a positive finite number`, where);
    return { scale: 1, rowScale: v, name: sname };
  }
  throw new CheckpointError(`'${sname}' has ${v.length} values, expected 1 (per tensor) or ${rows} (per row)`, where);
}

/**
 * The real values of a checkpoint tensor as float32: decoded, with its FP8 scale applied (per
 * tensor or per row). Every path that decodes weights (the f32 load, the norms and router,
 * conversions, the GGUF export) goes through this.
 */
export function readRealValues(reader: TensorReader, name: string, where: string): { values: Float32Array; scaleName?: string } {
  const info = reader.info(name);
  const rows = info.shape[0] ?? 1, cols = info.shape.length > 1 ? info.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  const sc = readScale(reader, name, rows, where);
  const values = reader.readF32(name);
  if (sc.scale !== 1 || sc.rowScale) for (let i = 0; i < values.length; i++) values[i]! *= sc.scale * (sc.rowScale ? sc.rowScale[Math.floor(i / cols)]! : 1);
  return { values, scaleName: sc.name };
}

/**
 * Load the weights of a checkpoint directory for a config, in the layout the model expects (the
 * experts of a layer as one ExpertWeights, or one stacked f32 tensor when dtype is 'f32').
 */
export function loadParams(dir: string, cfg: ModelConfig, backend: Backend, opts: LoadOptions = {}): { params: Map<string, Param>; report: LoadReport } {
  const dtype = opts.dtype ?? 'auto';
  if (!LOAD_DTYPES.includes(dtype)) throw new CheckpointError(`dtype '${dtype}': expected one of ${LOAD_DTYPES.join(', ')}`, dir);
  const reader = openCheckpoint(dir);
  const where = reader.indexPath ?? join(dir, SINGLE_FILE);
  const params = new Map<string, Param>();
  const regions = new Map<string, MappedRegion | null>();
  const report: LoadReport = { mappedBytes: 0, heapBytes: 0, mappedFiles: 0, bytesByDtype: {} };
  const used = new Set<string>();
  const plan = opts.shard ? shardPlan(cfg, opts.shard) : new Map<string, SliceSpec>();
  const mapping = opts.map !== false && backend.mapFile !== undefined && dtype === 'auto';
  const regionFor = (path: string): MappedRegion | null => {
    if (!regions.has(path)) {
      const r = mapping ? MappedRegion.open(backend, path) : null;
      // keep the region alive while loading (weights retain it; this reference is dropped at the end)
      r?.retain();
      if (r) report.mappedFiles++;
      regions.set(path, r);
    }
    return regions.get(path)!;
  };
  const count = (w: Weight) => {
    if (w.mapped) report.mappedBytes += w.bytes;
    else report.heapBytes += w.bytes;
    if (w.rowScale) report.heapBytes += 4 * w.rowScale.size; // per-row scales live in the heap
    report.bytesByDtype[w.dtypeName] = (report.bytesByDtype[w.dtypeName] ?? 0) + w.bytes;
  };

  /** One file tensor [rows, cols] as a Weight (matrix) in the requested form: all of it, or the slice `cut`. */
  const weightOf = (name: string, shape: readonly number[], keepBf16: boolean, cut?: SliceSpec): Weight => {
    const info = reader.info(name);
    used.add(name);
    const stored = STORED[info.dtype];
    if (stored === undefined) throw new CheckpointError(`tensor '${name}' is ${info.dtype}; weights must be F32, BF16, F16 or F8_E4M3`, where);
    const sc = readScale(reader, name, shape[0]!, where);
    if (sc.name) used.add(sc.name);
    const held = cut ? slicedShape(shape, cut) : shape;
    const rowScale = sc.rowScale && cut?.dim === 0 ? sc.rowScale.slice(cut.from, cut.from + cut.count) : sc.rowScale;
    const o = { scale: sc.scale, rowScale, name };
    const want = dtype === 'bf16' || (dtype === 'fp8' && keepBf16) ? WeightDType.BF16 : dtype === 'fp8' ? WeightDType.F8E4M3 : stored;
    const heap = (bytes: Uint8Array, d: WeightDType, wo: typeof o) => Weight.fromBytes(cut ? sliceBytes(bytes, shape, cut, WEIGHT_DTYPE_BYTES[d]!) : bytes, d, held, wo, backend);
    let w: Weight;
    if (want === stored) {
      const loc = reader.location(name);
      const region = regionFor(loc.path);
      // rows of a row-major matrix are contiguous: a row slice is read in place too
      if (region && (!cut || cut.dim === 0)) w = Weight.mapped(region, loc.offset + (cut ? cut.from * shape[1]! * WEIGHT_DTYPE_BYTES[stored]! : 0), stored, held, o, backend);
      else w = heap(reader.readRaw(name), stored, o);
    } else {
      // convert: the real values (scales applied), then re-encode
      const { values } = readRealValues(reader, name, where);
      if (want === WeightDType.BF16) w = heap(bf16Bytes(values), WeightDType.BF16, { name, scale: 1, rowScale: undefined });
      else {
        const q = quantizeFp8(values, shape[0]!, shape[1]!);
        w = heap(q.codes, WeightDType.F8E4M3, { name, scale: q.scale as number, rowScale: undefined });
      }
    }
    count(w);
    return w;
  };

  const checkShape = (name: string, shape: readonly number[]) => {
    if (!reader.has(name)) throw new CheckpointError(`missing tensor '${name}' (shape [${shape}])`, where);
    const info = reader.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`tensor '${name}' has shape [${info.shape}], the config needs [${shape}]`, where);
    }
  };

  try {
    const specs = parameterSpecs(cfg);
    specs.forEach((spec, i) => {
      const files = expertTensorNames(spec.name, cfg.numExperts);
      const perFile = files.length === 1 ? spec.shape : spec.shape.slice(1);
      for (const f of files) checkShape(f, perFile);
      const small = spec.kind === 'norm' || /\.gate(\.\d)?\.weight$/.test(spec.name);
      // Tensor parallelism: the files this rank reads (edp: its experts only) and each one's cut.
      const cut = plan.get(spec.name);
      let mine = files, fileCut = cut;
      if (cut && files.length > 1) {
        if (cut.dim === 0) {
          mine = files.slice(cut.from, cut.from + cut.count);
          fileCut = undefined;
          for (const f of files) used.add(f).add(`${f}_scale`); // the other ranks' experts
        } else fileCut = { ...cut, dim: cut.dim - 1 };
      }
      const shape = cut ? slicedShape(spec.shape, cut) : spec.shape;
      if (dtype === 'f32' || small) {
        // f32 heap tensor, stacked for experts (trainable; norms and router always)
        const t = T.keep(T.empty(shape, 'f32', backend));
        params.set(spec.name, t);
        mine.forEach((name, e) => {
          used.add(name);
          const { values, scaleName } = readRealValues(reader, name, where);
          if (scaleName) used.add(scaleName);
          const data = fileCut ? sliceValues(values, perFile, fileCut) : values;
          if (files.length === 1) t.assign(data);
          else {
            const v = t.rowsView(e, e + 1);
            v.assign(data);
            v.dispose();
          }
        });
        report.heapBytes += 4 * t.size;
        report.bytesByDtype.f32 = (report.bytesByDtype.f32 ?? 0) + 4 * t.size;
      } else {
        const keepBf16 = spec.name === 'model.embed_tokens.weight' || spec.name === 'lm_head.weight';
        if (files.length === 1) params.set(spec.name, weightOf(files[0]!, perFile, keepBf16, fileCut));
        else {
          const experts: Weight[] = [];
          try {
            for (const name of mine) experts.push(weightOf(name, perFile, keepBf16, fileCut));
          } catch (e) {
            for (const w of experts) w.dispose();
            throw e;
          }
          params.set(spec.name, new ExpertWeights(experts));
        }
      }
      opts.onProgress?.(i + 1, specs.length);
    });
    // Some exports of tied models still carry lm_head.weight (a copy of the embedding).
    const extra = reader.names().filter((n) => !used.has(n) && !IGNORED_TENSORS.test(n) && !(cfg.tieWordEmbeddings && n === 'lm_head.weight'));
    if (extra.length) throw new CheckpointError(`unexpected tensors for a ${cfg.layout} model with this config: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`, where);
    return { params, report };
  } catch (e) {
    for (const p of params.values()) p.dispose();
    throw e;
  } finally {
    for (const r of regions.values()) r?.release();
    reader.close();
  }
}

/** The slice `cut` of a row-major tensor's stored bytes (`elem` bytes per element). */
function sliceBytes(bytes: Uint8Array, shape: readonly number[], cut: SliceSpec, elem: number): Uint8Array {
  const outer = shape.slice(0, cut.dim).reduce((a, b) => a * b, 1);
  const inner = shape.slice(cut.dim + 1).reduce((a, b) => a * b, 1) * elem;
  const out = new Uint8Array(outer * cut.count * inner);
  for (let o = 0; o < outer; o++) out.set(bytes.subarray((o * cut.total + cut.from) * inner, (o * cut.total + cut.from + cut.count) * inner), o * cut.count * inner);
  return out;
}

/** What loading a checkpoint with dtype 'auto' holds where: matrices (mappable) and the small f32 tensors and row scales (heap). */
export function loadPlan(dir: string, cfg: ModelConfig): { matrixBytes: number; matrixBytesByDtype: Record<string, number>; smallHeapBytes: number } {
  const reader = openCheckpoint(dir);
  try {
    let matrixBytes = 0, smallHeapBytes = 0;
    const matrixBytesByDtype: Record<string, number> = {};
    for (const spec of parameterSpecs(cfg)) {
      const small = spec.kind === 'norm' || /\.gate(\.\d)?\.weight$/.test(spec.name);
      for (const name of expertTensorNames(spec.name, cfg.numExperts)) {
        if (!reader.has(name)) continue;
        const info = reader.info(name);
        if (small) smallHeapBytes += (4 * info.byteLength) / Math.max(1, DTYPE_BYTES[info.dtype]);
        else {
          matrixBytes += info.byteLength;
          matrixBytesByDtype[info.dtype] = (matrixBytesByDtype[info.dtype] ?? 0) + info.byteLength;
          // per-row scales are copied into the heap; a scalar scale is a kernel argument
          const scale = `${name}_scale`;
          if (reader.has(scale) && reader.info(scale).byteLength > 4) smallHeapBytes += reader.info(scale).byteLength;
        }
      }
    }
    return { matrixBytes, matrixBytesByDtype, smallHeapBytes };
  } finally {
    reader.close();
  }
}
