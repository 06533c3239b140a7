/**
 * GPT-2's byte-level alphabet: every byte 0..255 stands for one printable unicode character, so
 * BPE can work on strings while covering any byte sequence. Bytes that are printable Latin-1
 * characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 (controls, space,
 * DEL, NBSP, soft hyphen) take U+0100, U+0101, ... in byte order. Space therefore shows as 'Ġ'
 * (U+0120) and '\n' as 'Ċ' (U+010A), as in GPT-2's and Llama-3's vocabularies.
 */

function isPrintableLatin1(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

function buildByteToChar(): string[] {
  const out: string[] = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(isPrintableLatin1(b) ? b : next++);
  return out;
}

/** `BYTE_TO_CHAR[b]` is the character standing for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** The byte a byte-level character stands for; undefined for characters outside the alphabet. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * The bytes a vocabulary token stands for, or undefined when some character of it is outside the
 * byte-level alphabet (then it is not a byte-level token; callers fall back to its UTF-8 bytes).
 */
export function tokenToBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]!);
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}

/** The byte-level string of some bytes (one character per byte). */
export function bytesToToken(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]!]!;
  return s;
}

/**
 * UTF-8 encode `text` into `out` (grown when too small) and return the byte count. Lone
 * surrogates become U+FFFD, as TextEncoder does; a hand loop because this runs once per
 * uncached word of every encode call.
 */
export function utf8Encode(text: string, out: { buf: Uint8Array }): number {
  if (out.buf.length < text.length * 3) out.buf = new Uint8Array(text.length * 3 + 16);
  const buf = out.buf;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      buf[n++] = c;
      continue;
    }
    if (c < 0x800) {
      buf[n++] = 0xc0 | (c >> 6);
      buf[n++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const lo = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
        buf[n++] = 0xf0 | (c >> 18);
        buf[n++] = 0x80 | ((c >> 12) & 0x3f);
        buf[n++] = 0x80 | ((c >> 6) & 0x3f);
        buf[n++] = 0x80 | (c & 0x3f);
        continue;
      }
      c = 0xfffd;
    }
    buf[n++] = 0xe0 | (c >> 12);
    buf[n++] = 0x80 | ((c >> 6) & 0x3f);
    buf[n++] = 0x80 | (c & 0x3f);
  }
  return n;
}
