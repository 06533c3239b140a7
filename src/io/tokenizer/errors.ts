/** Errors of the tokenizer: bad or unsupported tokenizer files, tokens missing from a vocab. */

export class TokenizerError extends Error {
  override name = 'TokenizerError';
  /**
   * @param message what is wrong
   * @param file the file at fault (tokenizer.json, tokenizer_config.json), when there is one
   * @param field the JSON path of the field at fault, e.g. `model.merges[12]`
   */
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super([file, field, message].filter((s) => s !== undefined && s !== '').join(': '));
  }
}

/**
 * A value read from a file, as JSON text for a message. A value nested too deeply to print (a
 * hostile file) is described in words: the caller's TokenizerError names the file and field,
 * rather than a RangeError escaping from JSON.stringify.
 */
export function jsonText(v: unknown): string {
  try {
    return String(JSON.stringify(v));
  } catch {
    return Array.isArray(v) ? 'a deeply nested array' : 'a deeply nested object';
  }
}
