// openai (Node) against the Responses API under /v1/openai/v1/responses.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NotFoundError } from 'openai';

import { CHAT_MODEL, collect, openai } from '../lib/clients.mjs';

const WEATHER = {
  type: 'function',
  name: 'get_weather',
  description: 'The weather in a city.',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('responses: create, retrieve, input items, chain, delete', async () => {
  const made = await openai.responses.create({
    model: CHAT_MODEL,
    input: 'Say hello.',
    instructions: 'Answer in one word.',
    temperature: 0,
    max_output_tokens: 8,
    metadata: { suite: 'node' },
  });
  assert.equal(made.object, 'response');
  assert.match(made.id, /^resp_/);
  assert.ok(made.output_text.length > 0, 'the SDK assembles output_text');
  assert.deepEqual(made.metadata, { suite: 'node' });

  const stored = await openai.responses.retrieve(made.id);
  assert.equal(stored.id, made.id);
  assert.equal(stored.output_text, made.output_text);

  const items = [];
  for await (const item of openai.responses.inputItems.list(made.id)) items.push(item);
  assert.deepEqual(
    items.map((i) => i.type),
    ['message'],
  );
  assert.equal(items[0].content[0].text, 'Say hello.');

  const next = await openai.responses.create({
    model: CHAT_MODEL,
    input: 'And again.',
    previous_response_id: made.id,
    temperature: 0,
    max_output_tokens: 4,
  });
  const page = await openai.responses.inputItems.list(next.id, { order: 'asc' });
  assert.deepEqual(
    page.data.map((i) => i.role),
    ['user', 'assistant', 'user'],
  );

  await openai.responses.delete(made.id);
  await assert.rejects(openai.responses.retrieve(made.id), NotFoundError);
});

test('responses: raw stream events in order, and the stream helper', async () => {
  const events = await collect(
    await openai.responses.create({
      model: CHAT_MODEL,
      input: 'Count to three.',
      temperature: 0,
      max_output_tokens: 20,
      stream: true,
    }),
  );
  const kinds = events.map((e) => e.type);
  assert.deepEqual(kinds.slice(0, 4), [
    'response.created',
    'response.in_progress',
    'response.output_item.added',
    'response.content_part.added',
  ]);
  assert.ok(['response.completed', 'response.incomplete'].includes(kinds.at(-1)), kinds.at(-1));
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  const text = events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');
  assert.equal(events.at(-1).response.output[0].content[0].text, text);

  const stream = openai.responses.stream({
    model: CHAT_MODEL,
    input: 'Say hi.',
    temperature: 0,
    max_output_tokens: 200,
  });
  let deltas = '';
  stream.on('response.output_text.delta', (e) => {
    deltas += e.delta;
  });
  const final = await stream.finalResponse();
  assert.equal(final.status, 'completed');
  // (output_text is a convenience the SDK adds to created responses, not to streamed ones.)
  assert.equal(final.output[0].content[0].text, deltas);
  assert.equal((await openai.responses.retrieve(final.id)).output_text, deltas);
});

test('responses: a forced function call and its output', async () => {
  const called = await openai.responses.create({
    model: CHAT_MODEL,
    input: 'What is the weather in Paris?',
    tools: [WEATHER],
    tool_choice: { type: 'function', name: 'get_weather' },
    temperature: 0,
  });
  const call = called.output.find((o) => o.type === 'function_call');
  assert.equal(call.name, 'get_weather');
  assert.ok('city' in JSON.parse(call.arguments));
  const answer = await openai.responses.create({
    model: CHAT_MODEL,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'Sunny, 21 C.' }],
    previous_response_id: called.id,
    tools: [WEATHER],
    temperature: 0,
    max_output_tokens: 12,
  });
  assert.equal(answer.output[0].type, 'message');
});

test('responses: bad input is a 4xx naming the problem', async () => {
  await assert.rejects(
    openai.responses.create({ model: CHAT_MODEL, input: 'hi', previous_response_id: 'resp_missing' }),
    (err) => err instanceof NotFoundError && /resp_missing/.test(err.message),
  );
  await assert.rejects(
    openai.responses.create({ model: CHAT_MODEL, input: 'hi', include: ['nothing.here'] }),
    (err) => err.status === 400 && /include/.test(err.message),
  );
});
