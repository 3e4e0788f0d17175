// openai (Node) against the OpenAI-compatible routes under /v1/openai/v1.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NotFoundError, toFile } from 'openai';

import {
  CHAT_MODEL,
  EMBEDDING_DIMENSION,
  EMBEDDING_MODEL,
  collect,
  openai,
  unique,
} from '../lib/clients.mjs';

const MESSAGES = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
];
const HANDBOOK =
  'Employee handbook.\n\nHolidays: every employee has twenty-five days of paid holiday per year.\n\n' +
  'Expenses: receipts must be submitted within thirty days of purchase.\n';

test('models list', async () => {
  const models = [];
  for await (const model of openai.models.list()) models.push(model);
  const ids = models.map((m) => m.id);
  assert.ok(ids.includes(CHAT_MODEL) && ids.includes(EMBEDDING_MODEL), ids.join(', '));
  assert.ok(models.every((m) => m.object === 'model'));
});

test('chat completion, not streamed and streamed (with usage)', async () => {
  const args = { model: CHAT_MODEL, messages: MESSAGES, temperature: 0, max_tokens: 20 };
  const full = await openai.chat.completions.create(args);
  assert.equal(full.object, 'chat.completion');
  assert.match(full.choices[0].message.content, /Paris/);
  assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + full.usage.completion_tokens);

  const chunks = await collect(
    await openai.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, full.choices[0].message.content);
  const finishes = chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason).filter(Boolean));
  assert.deepEqual(finishes, [full.choices[0].finish_reason]);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.equal(chunks.at(-1).usage.completion_tokens, full.usage.completion_tokens);

  // The SDK's stream helper accumulates the same message.
  const runner = openai.chat.completions.stream(args);
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, full.choices[0].message.content);
});

test('completion, not streamed and streamed', async () => {
  const args = { model: CHAT_MODEL, prompt: 'The capital of France is', temperature: 0, max_tokens: 4 };
  const full = await openai.completions.create(args);
  assert.equal(full.object, 'text_completion');
  assert.match(full.choices[0].text, /Paris/);
  assert.equal(full.usage.completion_tokens, 4);
  const chunks = await collect(await openai.completions.create({ ...args, stream: true }));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), full.choices[0].text);
});

test('embeddings: the SDK default (base64, decoded by the SDK) equals float', async () => {
  const decoded = await openai.embeddings.create({
    model: EMBEDDING_MODEL,
    input: ['a llama', 'a spreadsheet'],
  });
  assert.deepEqual(
    decoded.data.map((d) => d.index),
    [0, 1],
  );
  assert.equal(decoded.data[0].embedding.length, EMBEDDING_DIMENSION);
  assert.ok(decoded.usage.prompt_tokens > 0);
  const floats = await openai.embeddings.create({
    model: EMBEDDING_MODEL,
    input: 'a llama',
    encoding_format: 'float',
  });
  floats.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - decoded.data[0].embedding[i]) < 1e-6));
  await assert.rejects(openai.embeddings.create({ model: CHAT_MODEL, input: 'x' }), /not an embedding model/);
});

test('tool calling with tool_choice required, not streamed and streamed', async () => {
  const args = {
    model: CHAT_MODEL,
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools: [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Get the weather in a city',
          parameters: {
            type: 'object',
            properties: {
              city: { type: 'string' },
              unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
            },
            required: ['city', 'unit'],
          },
        },
      },
    ],
    tool_choice: 'required',
    temperature: 0,
    max_tokens: 60,
  };
  const r = await openai.chat.completions.create(args);
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  const parsed = JSON.parse(call.function.arguments);
  assert.equal(typeof parsed.city, 'string');
  assert.ok(['celsius', 'fahrenheit'].includes(parsed.unit));

  // Streamed: the SDK reassembles the call from its deltas.
  const final = await openai.chat.completions.stream(args).finalChatCompletion();
  const streamedCall = final.choices[0].message.tool_calls[0];
  assert.equal(streamedCall.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(streamedCall.function.arguments), parsed);

  // The call's result goes back as a tool message and the model answers.
  const answer = await openai.chat.completions.create({
    model: CHAT_MODEL,
    messages: [
      ...args.messages,
      choice.message,
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' },
    ],
    temperature: 0,
    max_tokens: 30,
  });
  assert.ok(answer.choices[0].message.content);
});

test('files: upload, list, retrieve, content, delete', async () => {
  const body = `openai-node upload ${unique('f')}\n`;
  const file = await openai.files.create({
    file: await toFile(Buffer.from(body), 'note.txt'),
    purpose: 'assistants',
  });
  assert.equal(file.filename, 'note.txt');
  assert.equal(file.bytes, Buffer.byteLength(body));
  const ids = [];
  for await (const f of openai.files.list({ purpose: 'assistants' })) ids.push(f.id);
  assert.ok(ids.includes(file.id));
  assert.deepEqual(await openai.files.retrieve(file.id), file);
  assert.equal(await (await openai.files.content(file.id)).text(), body);
  const deleted = await openai.files.delete(file.id);
  assert.equal(deleted.deleted, true);
  await assert.rejects(openai.files.retrieve(file.id), NotFoundError);
});

test('vector stores: create, add a file, search', async () => {
  const file = await openai.files.create({
    file: await toFile(Buffer.from(HANDBOOK), 'handbook.txt'),
    purpose: 'assistants',
  });
  const store = await openai.vectorStores.create({
    name: unique('openai-node-store'),
    metadata: { team: 'hr' },
  });
  try {
    const attached = await openai.vectorStores.files.create(store.id, {
      file_id: file.id,
      attributes: { year: 2024 },
    });
    assert.equal(attached.status, 'completed');
    const files = [];
    for await (const f of openai.vectorStores.files.list(store.id)) files.push(f.id);
    assert.deepEqual(files, [file.id]);
    const results = [];
    for await (const hit of openai.vectorStores.search(store.id, { query: 'How many holidays do I get?' })) {
      results.push(hit);
    }
    assert.ok(results.length > 0);
    assert.equal(results[0].file_id, file.id);
    assert.equal(results[0].attributes.year, 2024);
    assert.match(results[0].content.map((c) => c.text).join(''), /twenty-five days/);
    const got = await openai.vectorStores.retrieve(store.id);
    assert.equal(got.file_counts.total, 1);
    assert.deepEqual(got.metadata, { team: 'hr' });

    // The attached file: retrieve, new attributes, detach. (files.content is left out: the SDK reads a
    // page under `data`, while the 0.2.12 contract answers `{file_id, filename, attributes, content}`.)
    const attachedAgain = await openai.vectorStores.files.retrieve(file.id, { vector_store_id: store.id });
    assert.equal(attachedAgain.id, file.id);
    assert.deepEqual(attachedAgain.attributes, { year: 2024 });
    const updated = await openai.vectorStores.files.update(file.id, {
      vector_store_id: store.id,
      attributes: { year: 2025 },
    });
    assert.deepEqual(updated.attributes, { year: 2025 });
    const renamed = await openai.vectorStores.update(store.id, { name: 'renamed' });
    assert.equal(renamed.name, 'renamed');
    const detached = await openai.vectorStores.files.delete(file.id, { vector_store_id: store.id });
    assert.equal(detached.deleted, true);
    assert.equal((await openai.vectorStores.retrieve(store.id)).file_counts.total, 0);
  } finally {
    assert.equal((await openai.vectorStores.delete(store.id)).deleted, true);
    await openai.files.delete(file.id);
  }
});
