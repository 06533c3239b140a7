/**
 * `skymoe tokenizer convert|encode|chat`: turn a tokenizer.model into tokenizer.json, show how a
 * text encodes (ids and tokens), and render a conversation with the chat template.
 */
import { existsSync, readFileSync } from 'node:fs';
import { applyChatTemplate, ChatTemplateError, loadTokenizer, saveTokenizer, type ChatMessage } from '../io/tokenizer/index.js';

/** Read a JSON file the user named with a flag; errors name the flag and the file. */
function readJsonFlag(path: string, flag: string): unknown {
  if (!existsSync(path)) throw new Error(`${flag} ${path}: not found`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${flag} ${path}: not valid JSON: ${(e as Error).message}`);
  }
}

export async function runTokenizerConvert(path: string, o: { out: string; maxLength?: number }): Promise<void> {
  const tok = await loadTokenizer(path);
  await saveTokenizer(o.out, tok, { modelMaxLength: o.maxLength });
  const kind = tok.model.type === 'BPE' ? (tok.byteLevel ? 'byte-level BPE' : `BPE${tok.model.byteFallback ? ' with byte fallback' : ''}`) : 'Unigram';
  console.log(`wrote ${o.out}/tokenizer.json and tokenizer_config.json: ${kind}, ${tok.vocabSize} tokens, ${tok.addedTokens.length} added (${tok.addedTokens.filter((t) => t.special).length} special)`);
}

export async function runTokenizerEncode(path: string, o: { text: string; special?: boolean; noTemplate?: boolean; json?: boolean }): Promise<void> {
  const tok = await loadTokenizer(path);
  const ids = tok.encode(o.text, { allowSpecial: o.special ?? false, addSpecialTokens: !o.noTemplate });
  if (o.json) {
    console.log(JSON.stringify({ ids, tokens: ids.map((id) => tok.idToToken(id)) }));
    return;
  }
  console.log(`${ids.length} tokens`);
  for (const id of ids) console.log(`${String(id).padStart(7)}  ${JSON.stringify(tok.idToToken(id))}`);
}

export async function runTokenizerChat(path: string, o: { messages: string; tools?: string; generationPrompt?: boolean; template?: string; var?: string[] }): Promise<void> {
  const tok = await loadTokenizer(path);
  const messages = readJsonFlag(o.messages, '--messages');
  if (!Array.isArray(messages)) throw new ChatTemplateError(`--messages ${o.messages}: expected a JSON array of {role, content}`);
  const tools = o.tools === undefined ? undefined : readJsonFlag(o.tools, '--tools');
  if (tools !== undefined && !Array.isArray(tools)) throw new ChatTemplateError(`--tools ${o.tools}: expected a JSON array of tool definitions`);
  const variables: Record<string, unknown> = {};
  for (const kv of o.var ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new Error(`--var ${kv}: expected name=value (value as JSON, e.g. enable_thinking=false)`);
    const raw = kv.slice(eq + 1);
    let v: unknown = raw;
    try {
      v = JSON.parse(raw);
    } catch {
      // a bare string
    }
    variables[kv.slice(0, eq)] = v;
  }
  process.stdout.write(
    applyChatTemplate(tok, messages as ChatMessage[], { addGenerationPrompt: o.generationPrompt ?? false, tools: tools as unknown[] | undefined, templateName: o.template, variables }),
  );
}
