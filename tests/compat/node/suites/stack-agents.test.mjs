// llama-stack-client@0.2.12 (Node): an agent, a session and a streamed turn read to turn_complete.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { CHAT_MODEL, collect, stack } from '../lib/clients.mjs';

const created = [];
after(async () => {
  for (const agentId of created) await stack.agents.delete(agentId);
});

test('agent with a streamed turn', async () => {
  const { agent_id: agentId } = await stack.agents.create({
    agent_config: {
      model: CHAT_MODEL,
      instructions: 'You are a helpful assistant.',
      sampling_params: { strategy: { type: 'greedy' }, max_tokens: 40 },
    },
  });
  created.push(agentId);
  const { session_id: sessionId } = await stack.agents.session.create(agentId, { session_name: 'node' });

  const chunks = await collect(
    await stack.agents.turn.create(agentId, sessionId, {
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      stream: true,
    }),
  );
  const events = chunks.map((c) => c.event.payload);
  const kinds = events.map((e) => e.event_type);
  assert.equal(kinds[0], 'turn_start');
  assert.equal(kinds.at(-1), 'turn_complete');
  assert.equal(events[1].event_type, 'step_start');
  assert.equal(events[1].step_type, 'inference');
  assert.ok(kinds.includes('step_progress'));
  assert.ok(kinds.includes('step_complete'));
  const progress = events
    .filter((e) => e.event_type === 'step_progress' && e.delta.type === 'text')
    .map((e) => e.delta.text)
    .join('');
  const turn = events.at(-1).turn;
  assert.equal(turn.output_message.content, progress);
  assert.match(turn.output_message.content, /Paris/);
  assert.deepEqual(
    turn.steps.map((s) => s.step_type),
    ['inference'],
  );

  const again = await stack.agents.turn.retrieve(agentId, sessionId, turn.turn_id);
  assert.equal(again.output_message.content, turn.output_message.content);
  const step = await stack.agents.steps.retrieve(agentId, sessionId, turn.turn_id, turn.steps[0].step_id);
  assert.equal(step.step.step_type, 'inference');

  // A second turn, not streamed, in the same session.
  const second = await stack.agents.turn.create(agentId, sessionId, {
    messages: [{ role: 'user', content: 'And of Germany?' }],
    stream: false,
  });
  assert.ok(second.output_message.content);
  const session = await stack.agents.session.retrieve(agentId, sessionId);
  assert.equal(session.turns.length, 2);
  assert.equal(session.turns[0].input_messages[0].content, 'What is the capital of France?');
});
