// The official SDKs, pointed at tollgate, get their answers unchanged and surface a
// refused request as their own error class (run by run_sdk_tests.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Mistral } from '@mistralai/mistralai';
import { SDKError } from '@mistralai/mistralai/models/errors/index.js';
import { Ollama } from 'ollama';

const { TG_PROXY, TG_SIDE, TG_SIM, TG_KEY, TG_BROKE_KEY, TOLLGATE_METRICS_TOKEN } = process.env;
// tollgate-sim answers 16 tokens: "Hello w1 w2 ... w15".
const EXPECTED = 'Hello' + Array.from({ length: 15 }, (_, i) => ` w${i + 1}`).join('');
const messages = [{ role: 'user', content: 'hello world!' }];

async function refusals() {
  const scrape = await fetch(`${TG_SIDE}/metrics`, {
    headers: { Authorization: `Bearer ${TOLLGATE_METRICS_TOKEN}` },
  });
  const text = await scrape.text();
  return Number(/tollgate_refusals_total\{reason="budget"\} (\d+)/.exec(text)[1]);
}

// A refusal must be final: one request reaches tollgate, the SDK does not retry it.
async function expectRefusedOnce(call, check) {
  const before = await refusals();
  await assert.rejects(call(), check);
  assert.equal(await refusals(), before + 1, 'the SDK retried a final refusal');
}

async function simSaw() {
  return (await (await fetch(`${TG_SIM}/_sim/requests`)).json()).at(-1);
}

for (const [name, baseURL, model, paid] of [
  ['mistral', `${TG_PROXY}/mistral/v1`, 'mistral-small-latest', true],
  ['deepseek', `${TG_PROXY}/deepseek/v1`, 'deepseek-flash', true],
  ['ollama', `${TG_PROXY}/ollama/v1`, 'llama3.2', false],  // local models cost 0: never refused for budget
]) {
  test(`openai SDK via /${name}: non-streaming`, async () => {
    const client = new OpenAI({ baseURL, apiKey: TG_KEY });
    const r = await client.chat.completions.create({ model, messages });
    assert.equal(r.choices[0].message.content, EXPECTED);
    assert.equal(r.usage.completion_tokens, 16);
  });

  test(`openai SDK via /${name}: streaming`, async () => {
    const client = new OpenAI({ baseURL, apiKey: TG_KEY });
    const stream = await client.chat.completions.create({ model, messages, stream: true });
    let text = '';
    let usageOnly = 0;
    for await (const chunk of stream) {
      if (chunk.choices.length === 0) usageOnly++;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(text, EXPECTED);
    assert.equal(usageOnly, 0, 'the usage chunk tollgate asked for reached a client that did not');
    const saw = await simSaw();
    assert.ok(!saw.body.includes(TG_KEY), 'the tollgate key reached the upstream');
  });

  if (paid) test(`openai SDK via /${name}: a refusal is APIError 402, not retried`, async () => {
    const client = new OpenAI({ baseURL, apiKey: TG_BROKE_KEY });
    await expectRefusedOnce(() => client.chat.completions.create({ model, messages, max_tokens: 10 }), (e) => {
      assert.ok(e instanceof OpenAI.APIError, e.constructor.name);
      assert.equal(e.status, 402);
      assert.match(e.message, /budget exhausted/);
      return true;
    });
  });
}

test('openai SDK via /deepseek/v1 sees usage when it asks for it', async () => {
  const client = new OpenAI({ baseURL: `${TG_PROXY}/deepseek/v1`, apiKey: TG_KEY });
  const stream = await client.chat.completions.create({
    model: 'deepseek-flash', messages, stream: true, stream_options: { include_usage: true },
  });
  let usage = null;
  for await (const chunk of stream) usage = chunk.usage ?? usage;
  assert.equal(usage.completion_tokens, 16);
});

test('anthropic SDK: messages.create and messages.stream', async () => {
  const client = new Anthropic({ baseURL: `${TG_PROXY}/anthropic`, apiKey: TG_KEY });
  const m = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages });
  assert.equal(m.content[0].text, EXPECTED);
  assert.equal(m.usage.output_tokens, 16);
  const saw = await simSaw();
  assert.equal(saw.headers['x-api-key'], 'sk-ant-e2e-upstream');
  const stream = client.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 100, messages });
  const final = await stream.finalMessage();
  assert.equal(final.content[0].text, EXPECTED);
  assert.equal(final.usage.output_tokens, 16);
});

test('anthropic SDK: a refusal is an APIError 402 billing_error, not retried', async () => {
  const client = new Anthropic({ baseURL: `${TG_PROXY}/anthropic`, apiKey: TG_BROKE_KEY });
  await expectRefusedOnce(() => client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages }), (e) => {
    assert.ok(e instanceof Anthropic.APIError, e.constructor.name);
    assert.equal(e.status, 402);
    assert.equal(e.error.error.type, 'billing_error');
    return true;
  });
});

test('mistral SDK: chat.complete and chat.stream', async () => {
  const client = new Mistral({ serverURL: `${TG_PROXY}/mistral`, apiKey: TG_KEY });
  const r = await client.chat.complete({ model: 'mistral-small-latest', messages });
  assert.equal(r.choices[0].message.content, EXPECTED);
  assert.equal(r.usage.completionTokens, 16);
  let text = '';
  let usage = null;
  for await (const event of await client.chat.stream({ model: 'mistral-small-latest', messages })) {
    text += event.data.choices[0]?.delta?.content ?? '';
    usage = event.data.usage ?? usage;
  }
  assert.equal(text, EXPECTED);
  assert.equal(usage.completionTokens, 16);
});

test('mistral SDK: a refusal is SDKError 402', async () => {
  const client = new Mistral({ serverURL: `${TG_PROXY}/mistral`, apiKey: TG_BROKE_KEY });
  await expectRefusedOnce(() => client.chat.complete({ model: 'mistral-small-latest', messages, maxTokens: 10 }), (e) => {
    assert.ok(e instanceof SDKError, e.constructor.name);
    assert.equal(e.statusCode, 402);
    assert.match(e.body, /budget exhausted/);
    return true;
  });
});

test('ollama SDK: chat, streaming chat and generate', async () => {
  const client = new Ollama({ host: `${TG_PROXY}/ollama`, headers: { Authorization: `Bearer ${TG_KEY}` } });
  const r = await client.chat({ model: 'llama3.2', messages, stream: false });
  assert.equal(r.message.content, EXPECTED);
  assert.equal(r.eval_count, 16);
  let text = '';
  let last = null;
  for await (const part of await client.chat({ model: 'llama3.2', messages, stream: true })) {
    text += part.message.content;
    last = part;
  }
  assert.equal(text, EXPECTED);
  assert.equal(last.done, true);
  const g = await client.generate({ model: 'llama3.2', prompt: 'hi', stream: false });
  assert.equal(g.response, EXPECTED);
});

test('ollama SDK: a refused request is a ResponseError', async () => {
  // Local Ollama models cost 0, so a budget never refuses them; an unknown key does.
  const client = new Ollama({ host: `${TG_PROXY}/ollama`, headers: { Authorization: 'Bearer tg-nope' } });
  await assert.rejects(client.chat({ model: 'llama3.2', messages, stream: false }), (e) => {
    assert.equal(e.name, 'ResponseError');
    assert.equal(e.status_code, 401);
    assert.match(e.error, /invalid tollgate key/);
    return true;
  });
});
