/**
 * Tokenizers: byte-level BPE training, Hugging Face tokenizer.json / tokenizer_config.json
 * files (byte-level BPE, SentencePiece-style BPE with byte fallback, Unigram), SentencePiece
 * tokenizer.model files and their precompiled normalization maps, encoding, streaming decoding
 * and chat templates.
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
export { BpeModel, byteFallbackToken, type BpeModelInit } from './bpe.js';
export { applyChatTemplate, ChatTemplateError, type ChatMessage, type ChatTemplateOptions } from './chat.js';
export { compileDecoder, parseDecoder, type DecoderSpec } from './decoders.js';
export { TokenizerError } from './errors.js';
export {
  loadTokenizer,
  saveTokenizer,
  tokenizerConfigJson,
  tokenizerFromJson,
  tokenizerToJson,
  type SaveTokenizerOptions,
} from './hf-json.js';
export { compileNormalizer, parseNormalizer, type NormalizerSpec } from './normalize.js';
export { PrecompiledCharsMap } from './precompiled.js';
export { GPT2_PATTERN, GPT2_PRE_TOKENIZER, PreTokenizer, parsePreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
export {
  mergesFromPieces,
  parseSentencePiece,
  PieceType,
  sentencePieceToBytes,
  SpmModelType,
  tokenizerFromSentencePiece,
  tokenizerFromSentencePieceModel,
  type SentencePiece,
  type SentencePieceModel,
} from './sentencepiece.js';
export { StreamDecoder } from './stream.js';
export {
  Tokenizer,
  type AddedToken,
  type DecodeOptions,
  type EncodeOptions,
  type SpecialTokenRoles,
  type TokenizerInit,
  type TokenModel,
} from './tokenizer.js';
export { SKYWORK_SPECIAL_TOKENS, trainBpe, type SpecialToken, type TrainBpeOptions, type TrainProgress } from './train.js';
export { UnigramModel, type UnigramModelInit } from './unigram.js';
