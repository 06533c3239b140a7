/** `skymoe quantize --model DIR --to fp8|bf16 --out DIR`: FP8 (Skywork/vLLM layout) or bf16 weights. */
import { fmtBytes } from './common.js';
import { quantizeCheckpoint, type QuantizeTarget } from '../quant/quantize.js';

export interface QuantizeCliOptions {
  model: string;
  to: QuantizeTarget;
  out: string;
  perRow?: boolean;
  report?: boolean;
}

export function runQuantize(o: QuantizeCliOptions): void {
  const t0 = performance.now();
  let last = 0;
  const r = quantizeCheckpoint(o.model, o.out, {
    to: o.to,
    perRow: o.perRow,
    report: o.report,
    onProgress: (done, total) => {
      const now = performance.now();
      if (now - last > 1000 || done === total) {
        last = now;
        process.stderr.write(`\rquantize: ${done}/${total} tensors`);
        if (done === total) process.stderr.write('\n');
      }
    },
  });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`${o.model} -> ${o.out}: ${o.to}${o.to === 'fp8' ? (o.perRow ? ' (per-row scales)' : ' (per-tensor scales)') : ''}, ${fmtBytes(r.sourceBytes)} -> ${fmtBytes(r.bytes)} in ${r.files.join(', ')} (${s} s)`);
  if (o.report) {
    const rows = [...r.tensors].sort((a, b) => b.relRms - a.relRms);
    console.log('quantization error per tensor (relative RMS, max |error|), worst first:');
    for (const t of rows) console.log(`  ${t.relRms.toExponential(3)}  ${t.maxAbs.toExponential(3)}  ${t.dtype.padEnd(8)} ${t.name}`);
    const mean = rows.reduce((a, t) => a + t.relRms, 0) / Math.max(1, rows.length);
    console.log(`mean relative RMS error ${mean.toExponential(3)} over ${rows.length} tensors`);
  }
}
