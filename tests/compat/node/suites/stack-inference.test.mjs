// llama-stack-client@0.2.12 (Node): models and inference, native and OpenAI-compatible routes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NotFoundError } from 'llama-stack-client';

import { CHAT_MODEL, EMBEDDING_DIMENSION, EMBEDDING_MODEL, collect, stack } from '../lib/clients.mjs';

const GREEDY = { strategy: { type: 'greedy' }, max_tokens: 20 };
const QUESTION = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
];

test('models list and retrieve', async () => {
  const models = new Map((await stack.models.list()).map((m) => [m.identifier, m]));
  assert.equal(models.get(CHAT_MODEL)?.model_type, 'llm');
  assert.equal(models.get(EMBEDDING_MODEL)?.model_type, 'embedding');
  assert.equal(models.get(EMBEDDING_MODEL).metadata.embedding_dimension, EMBEDDING_DIMENSION);
  // The identifier has a slash; the client puts it in the path as it is.
  const chat = await stack.models.retrieve(CHAT_MODEL);
  assert.equal(chat.identifier, CHAT_MODEL);
  assert.equal(chat.provider_id, 'llama-cpp');
  await assert.rejects(stack.models.retrieve('no-such-model'), NotFoundError);
});

test('native chat completion, not streamed and streamed', async () => {
  const full = await stack.inference.chatCompletion({
    model_id: CHAT_MODEL,
    messages: QUESTION,
    sampling_params: GREEDY,
  });
  assert.equal(full.completion_message.role, 'assistant');
  assert.match(full.completion_message.content, /Paris/);
  assert.equal(full.completion_message.stop_reason, 'end_of_turn');

  const chunks = await collect(
    await stack.inference.chatCompletion({
      model_id: CHAT_MODEL,
      messages: QUESTION,
      sampling_params: GREEDY,
      stream: true,
    }),
  );
  const kinds = chunks.map((c) => c.event.event_type);
  assert.equal(kinds[0], 'start');
  assert.equal(kinds.at(-1), 'complete');
  assert.deepEqual([...new Set(kinds.slice(1, -1))], ['progress']);
  const text = chunks.map((c) => c.event.delta.text ?? '').join('');
  assert.equal(text, full.completion_message.content);
  assert.equal(chunks.at(-1).event.stop_reason, full.completion_message.stop_reason);
});

test('native completion, not streamed and streamed', async () => {
  const args = {
    model_id: CHAT_MODEL,
    content: 'The capital of France is',
    sampling_params: { max_tokens: 4 },
  };
  const full = await stack.inference.completion(args);
  assert.match(full.content, /Paris/);
  assert.equal(full.stop_reason, 'out_of_tokens');
  const chunks = await collect(await stack.inference.completion({ ...args, stream: true }));
  assert.equal(chunks.map((c) => c.delta).join(''), full.content);
  assert.equal(chunks.at(-1).stop_reason, 'out_of_tokens');
});

test('native embeddings', async () => {
  const r = await stack.inference.embeddings({
    model_id: EMBEDDING_MODEL,
    contents: ['a llama', 'an alpaca'],
  });
  assert.equal(r.embeddings.length, 2);
  assert.equal(r.embeddings[0].length, EMBEDDING_DIMENSION);
  const norm = Math.hypot(...r.embeddings[0]);
  assert.ok(Math.abs(norm - 1) < 1e-3, `expected a unit vector, norm ${norm}`);
});

test('native tool calling with tool_choice required', async () => {
  const r = await stack.inference.chatCompletion({
    model_id: CHAT_MODEL,
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools: [
      {
        tool_name: 'get_weather',
        description: 'Get the weather in a city',
        parameters: { city: { param_type: 'string', description: 'The city', required: true } },
      },
    ],
    tool_config: { tool_choice: 'required' },
    sampling_params: { strategy: { type: 'greedy' }, max_tokens: 60 },
  });
  const calls = r.completion_message.tool_calls;
  assert.equal(calls.length, 1);
  assert.equal(calls[0].tool_name, 'get_weather');
  assert.equal(typeof calls[0].arguments.city, 'string');
  assert.ok(calls[0].call_id);
});

test('OpenAI-compatible chat completion through llama-stack-client, not streamed and streamed', async () => {
  const args = {
    model: CHAT_MODEL,
    messages: QUESTION,
    temperature: 0,
    max_tokens: 20,
  };
  const full = await stack.chat.completions.create(args);
  assert.equal(full.object, 'chat.completion');
  assert.match(full.choices[0].message.content, /Paris/);
  // The stream must end cleanly: this client parses every frame as JSON.
  const chunks = await collect(await stack.chat.completions.create({ ...args, stream: true }));
  assert.ok(chunks.length > 1);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, full.choices[0].message.content);
  assert.equal(chunks.at(-1).choices[0].finish_reason, full.choices[0].finish_reason);
});

test('OpenAI-compatible completion and embeddings through llama-stack-client', async () => {
  const args = { model: CHAT_MODEL, prompt: 'The capital of France is', temperature: 0, max_tokens: 4 };
  const full = await stack.completions.create(args);
  assert.match(full.choices[0].text, /Paris/);
  const chunks = await collect(await stack.completions.create({ ...args, stream: true }));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), full.choices[0].text);
  assert.ok(chunks.at(-1).choices[0].finish_reason);

  const emb = await stack.embeddings.create({ model: EMBEDDING_MODEL, input: ['a llama'] });
  assert.equal(emb.data[0].embedding.length, EMBEDDING_DIMENSION);
  const native = await stack.inference.embeddings({ model_id: EMBEDDING_MODEL, contents: ['a llama'] });
  emb.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - native.embeddings[0][i]) < 1e-5));
});
