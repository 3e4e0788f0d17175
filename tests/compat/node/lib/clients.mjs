// The two official Node clients, pointed at the server under test. The URL comes from
// LLAMA_STACK_BASE_URL (the variable llama-stack-client itself reads), e.g. http://127.0.0.1:8321.
import LlamaStackClient from 'llama-stack-client';
import OpenAI from 'openai';

export const CHAT_MODEL = 'HuggingFaceTB/SmolLM2-135M-Instruct';
export const EMBEDDING_MODEL = 'all-MiniLM-L6-v2';
export const EMBEDDING_DIMENSION = 384;

export const baseURL = (() => {
  const url = process.env.LLAMA_STACK_BASE_URL;
  if (!url) {
    throw new Error('Set LLAMA_STACK_BASE_URL to the server under test, e.g. http://127.0.0.1:8321');
  }
  return url.replace(/\/+$/, '');
})();

// No retries: a failure must show on the first request, not be hidden by a second one.
export const stack = new LlamaStackClient({ baseURL, maxRetries: 0, timeout: 120_000 });
export const openai = new OpenAI({
  baseURL: `${baseURL}/v1/openai/v1`,
  apiKey: 'not-needed',
  maxRetries: 0,
  timeout: 120_000,
});

/** Reads a stream to its end; a client that chokes on the last frame throws here. */
export async function collect(stream) {
  const items = [];
  for await (const item of stream) items.push(item);
  return items;
}

/** A name no other test (or earlier run against the same server) uses. */
export function unique(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
