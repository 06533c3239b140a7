/**
 * Byte-level BPE tokenizer: training, encoding, streaming decoding, and Hugging Face
 * tokenizer.json / tokenizer_config.json files.
 *
 * @example
 * ```ts
 * import { trainBpe, saveTokenizer, loadTokenizer } from './io/tokenizer/index.js';
 * const tok = trainBpe([corpus], { vocabSize: 4096 });
 * await saveTokenizer('out/tok', tok, { modelMaxLength: 4096 });
 * const ids = (await loadTokenizer('out/tok')).encode('Call me Ishmael.');
 * ```
 */
export { BYTE_TO_CHAR, CHAR_TO_BYTE } from './byte-level.js';
export {
  BpeTokenizer,
  type AddedToken,
  type BpeTokenizerInit,
  type DecodeOptions,
  type EncodeOptions,
  type SpecialTokenRoles,
} from './bpe.js';
export { TokenizerError } from './errors.js';
export {
  loadTokenizer,
  saveTokenizer,
  tokenizerConfigJson,
  tokenizerFromJson,
  tokenizerToJson,
  type SaveTokenizerOptions,
} from './hf-json.js';
export { GPT2_PATTERN, GPT2_PRE_TOKENIZER, PreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
export { StreamDecoder } from './stream.js';
export { SKYWORK_SPECIAL_TOKENS, trainBpe, type SpecialToken, type TrainBpeOptions, type TrainProgress } from './train.js';
