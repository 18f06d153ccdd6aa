import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import {
  codeReply,
  eventsOf,
  finished,
  good,
  MODULES,
  planReply,
  routeByGoal,
  straight,
  tasksOnlyPluginsDir,
  types,
  waitForEvent,
} from './testing.ts'

const PLUGINS_DIR = tasksOnlyPluginsDir()

let mock: MockOllama
let server: TestServer
let model: ReturnType<typeof routeByGoal>

beforeAll(async () => {
  mock = await startMockOllama()
  model = routeByGoal(mock)
  server = await startTestServer({
    PLUGINS_DIR,
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    TASK_CONCURRENCY: '5',
    SANDBOX_TIMEOUT_MS: '15000',
  })
}, 30_000)
afterAll(async () => {
  await server.stop()
  await mock.stop()
}, 30_000)

const start = async (prompt: string, extra: Record<string, unknown> = {}) => {
  const res = await server.api('/tasks', { method: 'POST', json: { prompt, ...extra } })
  expect(res.status).toBe(201)
  return res.body.task_id as string
}

describe('a task end to end with the simulated model', () => {
  test('plans, writes, runs the tests green in the sandbox, and completes', async () => {
    const goal = 'Build a tiny statistics library'
    model.on(goal, straight(['mathutil', 'stats']))
    const t0 = performance.now()
    const res = await server.api('/tasks', {
      method: 'POST',
      json: { prompt: goal, answers: ['Use plain numbers', ''] },
    })
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(res.status).toBe(201)
    const id = res.body.task_id as string
    expect(id).toMatch(/^task-/)
    expect(res.body.status).toBe('queued')
    expect(res.body.websocket_url).toBe(`${server.url.replace('http', 'ws')}/ws/${id}`)
    expect(res.body.events_url).toBe(`${server.url}/api/streams/${id}/events`)

    const events = await finished(server, id)
    expect(types(events)).toEqual([
      'TASK_STARTED',
      'PLANNING_COMPLETE',
      'MODULE_STARTED',
      'MODULE_ITERATION',
      'TEST_PASSED',
      'MODULE_COMPLETE',
      'MODULE_STARTED',
      'MODULE_ITERATION',
      'TEST_PASSED',
      'MODULE_COMPLETE',
      'TASK_COMPLETE',
    ])
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
    expect(events[0]!.data).toMatchObject({ goal })
    expect(events.find((e) => e.type === 'PLANNING_COMPLETE')!.data).toMatchObject({
      modules: ['mathutil.ts', 'stats.ts'],
      estimated_iterations: 2,
    })
    const iteration = events.find((e) => e.type === 'MODULE_ITERATION')!.data as Record<string, unknown>
    expect(iteration).toMatchObject({
      module: 'mathutil.ts',
      iteration: 1,
      test_pass_rate: 1,
      quality_score: 1,
    })
    expect(events.at(-1)!.data).toMatchObject({ modules_generated: 2 })
    const logs = events.filter((e) => e.type === 'LOG').map((e) => (e.data as { message: string }).message)
    expect(logs).toContain('Task started')
    expect(logs.some((m) => m.startsWith('Planning complete'))).toBe(true)

    const status = await server.api(`/tasks/${id}`)
    expect(status.body).toMatchObject({
      task_id: id,
      status: 'completed',
      modules_complete: 2,
      total_modules: 2,
      progress: 1,
    })
    expect(status.body.finished_at).not.toBeNull()
    const results = await server.api(`/tasks/${id}/results`)
    expect(results.status).toBe(200)
    expect(results.body.modules.map((m: { name: string }) => m.name)).toEqual(['mathutil.ts', 'stats.ts'])
    for (const m of results.body.modules) {
      expect(m.quality_score).toBe(1)
      expect(m.test_report.passed).toBe(2)
      expect(m.test_report.failed).toBe(0)
      expect(m.test_report.type_check).toBe(true)
      expect(m.test_report.output).toMatch(/2 pass/)
    }
    expect(results.body.modules[1].code).toBe(MODULES.stats.code.trim())
    // The plan prompt carried the answers; the second module saw the first one's code.
    const chats = mock.requests.filter((r) => r.path === '/api/chat' && JSON.stringify(r.body).includes(goal))
    expect(JSON.stringify(chats[0]!.body.messages)).toContain('Use plain numbers')
    expect(chats[0]!.body.format).toMatchObject({ type: 'object' })
    expect(JSON.stringify(chats.at(-1)!.body.messages)).toContain('export const add')
  }, 60_000)

  test('URLs honour X-Forwarded-Proto/Host from a trusted proxy', async () => {
    model.on('forwarded goal', straight(['mathutil']))
    const res = await server.api('/tasks', {
      method: 'POST',
      json: { prompt: 'forwarded goal' },
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'gantry.example:8443' },
    })
    expect(res.body.websocket_url).toBe(`wss://gantry.example:8443/ws/${res.body.task_id}`)
    expect(res.body.events_url).toBe(`https://gantry.example:8443/api/streams/${res.body.task_id}/events`)
    await finished(server, res.body.task_id)
    // nginx names the port it listens on; the default one is dropped, as browsers drop it from Origin.
    const onDefault = await server.api('/tasks', {
      method: 'POST',
      json: { prompt: 'forwarded goal' },
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'gantry.example:443' },
    })
    expect(onDefault.body.websocket_url).toBe(`wss://gantry.example/ws/${onDefault.body.task_id}`)
    await finished(server, onDefault.body.task_id)
  }, 30_000)

  test('failing first attempts iterate with the failures fed back', async () => {
    const goal = 'Build an adder that works eventually'
    model.on(goal, ({ step, n }) => {
      if (step === 'plan') return { content: planReply(['mathutil']) }
      return n === 1
        ? { content: codeReply(MODULES.mathutil.buggy, MODULES.mathutil.tests) }
        : good('mathutil')
    })
    const id = await start(goal, { max_iterations: 3 })
    const events = await finished(server, id)
    expect(types(events)).toContain('TASK_COMPLETE')
    const iterations = events.filter((e) => e.type === 'MODULE_ITERATION').map((e) => e.data as any)
    expect(iterations.map((i) => i.iteration)).toEqual([1, 2])
    expect(iterations[0].test_pass_rate).toBeLessThan(1)
    expect(iterations[0].quality_score).toBeLessThan(iterations[1].quality_score)
    expect(iterations[1].test_pass_rate).toBe(1)
    const second = mock.requests.filter(
      (r) => r.path === '/api/chat' && JSON.stringify(r.body).includes(goal),
    )[2]!
    const fed = JSON.stringify(second.body.messages)
    expect(fed).toContain('The tests did not pass')
    expect(fed).toContain('a - b') // its own previous code
    expect(fed).toMatch(/Expected: 5/)
    const results = await server.api(`/tasks/${id}/results`)
    expect(results.body.modules[0].iterations).toBe(2)
    expect(results.body.modules[0].quality_score).toBe(1)
  }, 60_000)

  test('a module that never goes green keeps its best attempt with a lower score', async () => {
    const goal = 'Build an adder that never works'
    model.on(goal, ({ step }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : { content: codeReply(MODULES.mathutil.buggy, MODULES.mathutil.tests) },
    )
    const id = await start(goal, { max_iterations: 2 })
    const events = await finished(server, id)
    expect(types(events).filter((t) => t === 'MODULE_ITERATION')).toHaveLength(2)
    expect(types(events)).not.toContain('TEST_PASSED')
    expect(events.find((e) => e.type === 'MODULE_COMPLETE')!.data).toMatchObject({ tests_passed: false })
    const results = await server.api(`/tasks/${id}/results`)
    // Both tests fail, the types check: 0.8 × 0 + 0.2 × 1.
    expect(results.body.modules[0].quality_score).toBe(0.2)
    expect(results.body.modules[0].test_report).toMatchObject({ passed: 0, failed: 2, type_check: true })
  }, 60_000)

  test('malformed plans are retried with the problem fed back', async () => {
    const goal = 'Build something after two bad plans'
    model.on(goal, ({ step, n }) => {
      if (step === 'code') return good('mathutil')
      if (n === 1) return { content: 'Sure! Here is my plan: first, we...' }
      if (n === 2) return { content: JSON.stringify({ modules: [{ name: 'Bad Name!', purpose: 'x' }] }) }
      return { content: planReply(['mathutil']) }
    })
    const id = await start(goal)
    const events = await finished(server, id)
    expect(types(events).at(-1)).toBe('TASK_COMPLETE')
    const plans = mock.requests.filter(
      (r) =>
        r.path === '/api/chat' &&
        JSON.stringify(r.body).includes(goal) &&
        r.body.messages[0].content.startsWith('You plan'),
    )
    expect(plans).toHaveLength(3)
    expect(JSON.stringify(plans[1]!.body.messages)).toContain('not valid JSON')
    expect(JSON.stringify(plans[2]!.body.messages)).toContain('lower-case file name')
    const warnings = events.filter((e) => e.type === 'LOG' && (e.data as any).level === 'WARN')
    expect(warnings).toHaveLength(2)
  }, 60_000)

  test('a model that never gives a usable plan fails the task saying what it returned', async () => {
    const goal = 'Build a thing the model cannot plan'
    model.on(goal, () => ({ content: '{"modules": "all of them"}' }))
    const id = await start(goal)
    const events = await finished(server, id)
    const failed = events.at(-1)!
    expect(failed.type).toBe('TASK_FAILED')
    const reason = (failed.data as { reason: string }).reason
    expect(reason).toContain('planning')
    expect(reason).toContain('3 attempts')
    expect(reason).toContain('all of them')
    // The row follows the terminal event by a round trip (the event first: see the workflow's end).
    const status = await waitFor(async () => {
      const res = await server.api(`/tasks/${id}`)
      return res.body.status === 'failed' && res
    })
    expect(status.body.error).toBe(reason)
  }, 30_000)

  test('a reply without code is retried; an error mid-stream retries the step', async () => {
    const goal = 'Build an adder through a flaky model'
    model.on(goal, ({ step, n }) => {
      if (step === 'plan')
        return n === 1
          ? { content: planReply(['mathutil']), failAfterTokens: 3 }
          : { content: planReply(['mathutil']) }
      if (n === 1) return { content: JSON.stringify({ code: '', tests: MODULES.mathutil.tests }) }
      return good('mathutil')
    })
    const id = await start(goal)
    const events = await finished(server, id)
    expect(types(events).at(-1)).toBe('TASK_COMPLETE')
    const warnings = events
      .filter((e) => e.type === 'LOG' && (e.data as any).level === 'WARN')
      .map((e) => (e.data as any).message as string)
    expect(warnings.some((m) => m.startsWith('planning: model call failed'))).toBe(true)
    expect(warnings.some((m) => m.includes('no "code"'))).toBe(true)
  }, 60_000)

  test('cancel mid-generation aborts the model request and ends the task within a second', async () => {
    const goal = 'Build something slow to cancel'
    let codeCalls = 0
    model.on(goal, ({ step }) => {
      if (step === 'plan') return { content: planReply(['mathutil']) }
      codeCalls++
      return {
        content: codeReply(MODULES.mathutil.code, MODULES.mathutil.tests),
        hang: true,
        tokensPerSecond: 20,
      }
    })
    const id = await start(goal)
    await waitForEvent(server, id, 'MODULE_STARTED')
    await waitFor(() => codeCalls > 0 && mock.activeGenerations > 0, 10_000, 'the generation to start')
    const t0 = performance.now()
    const res = await server.api(`/tasks/${id}/cancel`, { method: 'POST' })
    expect(res.status).toBe(202)
    expect(res.body).toEqual({ task_id: id, status: 'cancelling' })
    const cancelled = await waitForEvent(server, id, 'TASK_CANCELLED', 2000)
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(cancelled.data).toMatchObject({ module: 'mathutil' })
    await waitFor(() => mock.activeGenerations === 0, 2000, 'the mock to see the abort')
    await waitFor(async () => (await server.api(`/tasks/${id}`)).body.status === 'cancelled')
    // Cancelling again, or steering a finished task, is a conflict.
    const again = await server.api(`/tasks/${id}/cancel`, { method: 'POST' })
    expect(again.status).toBe(409)
    expect(again.body.error).toBe('conflict')
    const steer = await server.api(`/tasks/${id}/interventions`, {
      method: 'POST',
      json: { guidance: 'hurry' },
    })
    expect(steer.status).toBe(409)
    expect(codeCalls).toBe(1)
  }, 30_000)

  test('cancel while the sandbox runs kills the test run within a second', async () => {
    const goal = 'Build something whose tests never end'
    model.on(goal, ({ step }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : {
            content: codeReply(
              MODULES.mathutil.code,
              "import { test } from 'bun:test'\ntest('forever', async () => { await Bun.sleep(600_000) }, 900_000)",
            ),
          },
    )
    const id = await start(goal)
    await waitFor(
      async () =>
        (await eventsOf(server, id)).some(
          (e) => e.type === 'LOG' && String((e.data as any).message).startsWith('Testing mathutil.ts'),
        ),
      20_000,
    )
    await Bun.sleep(300) // inside bun test by now
    const t0 = performance.now()
    expect((await server.api(`/tasks/${id}/cancel`, { method: 'POST' })).status).toBe(202)
    await waitForEvent(server, id, 'TASK_CANCELLED', 2000)
    expect(performance.now() - t0).toBeLessThan(1000)
  }, 40_000)

  test('an intervention changes the next prompt and is marked applied', async () => {
    const goal = 'Build a steerable adder'
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    model.on(goal, async ({ step, module }) => {
      if (step === 'plan') {
        await gate // hold planning until the guidance has been sent
        return { content: planReply(['mathutil']) }
      }
      return good(module as 'mathutil')
    })
    const id = await start(goal)
    await waitForEvent(server, id, 'TASK_STARTED')
    await waitFor(() => mock.requests.some((r) => JSON.stringify(r.body ?? '').includes(goal)))
    const res = await server.api(`/tasks/${id}/interventions`, {
      method: 'POST',
      json: { guidance: 'Use RFC 5322 semantics' },
    })
    expect(res.status).toBe(202)
    expect(res.body).toMatchObject({ task_id: id, accepted: true })
    release()
    const events = await finished(server, id)
    const chats = mock.requests.filter((r) => r.path === '/api/chat' && JSON.stringify(r.body).includes(goal))
    expect(JSON.stringify(chats[0]!.body.messages)).not.toContain('RFC 5322')
    expect(chats[1]!.body.messages[0].content).toContain('Use RFC 5322 semantics')
    const applied = events.filter((e) => e.type === 'INTERVENTION_APPLIED')
    expect(applied).toHaveLength(1)
    expect(applied[0]!.data).toMatchObject({ guidance: 'Use RFC 5322 semantics', received_seq: res.body.seq })
    const received = events.find((e) => e.type === 'INTERVENTION_RECEIVED')!
    expect(received.seq).toBeLessThan(applied[0]!.seq)
  }, 30_000)

  test('5 tasks at once on one instance all complete, running side by side', async () => {
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const goal = `Parallel task number ${i} please`
      model.on(goal, async (turn) => {
        await Bun.sleep(150)
        return straight(['mathutil'])(turn)
      })
      ids.push(await start(goal))
    }
    const all = await Promise.all(ids.map((id) => finished(server, id, 60_000)))
    for (const events of all) expect(types(events).at(-1)).toBe('TASK_COMPLETE')
    const started = all.map((ev) => Date.parse(ev.find((e) => e.type === 'TASK_STARTED')!.timestamp))
    const firstDone = Math.min(...all.map((ev) => Date.parse(ev.at(-1)!.timestamp)))
    expect(Math.max(...started)).toBeLessThan(firstDone) // all five started before any finished
    // Each row follows its terminal event by a round trip.
    await waitFor(
      async () => {
        const list = await server.api('/tasks?status=completed&limit=100')
        return ids.every((id) => list.body.tasks.some((t: { task_id: string }) => t.task_id === id))
      },
      5000,
      'the five tasks listed as completed',
    )
  }, 90_000)

  test('an unknown model fails with the ollama pull hint', async () => {
    model.on('Build with a missing model', straight(['mathutil']))
    const id = await start('Build with a missing model', { model: 'no-such-model' })
    const events = await finished(server, id)
    const reason = (events.at(-1)!.data as { reason: string }).reason
    expect(events.at(-1)!.type).toBe('TASK_FAILED')
    expect(reason).toContain('ollama pull no-such-model')
  }, 30_000)

  test('the agent tools start and list tasks for the calling user', async () => {
    const { gantry } = server.running
    const tool = gantry.tools.get('start_coding_task')!
    model.on('Tool-started adder', straight(['mathutil']))
    const [admin] = await gantry.store.query<{ id: string; name: string }>(
      'select id, name from users limit 1',
    )
    const user = {
      userId: admin!.id,
      userName: admin!.name,
      role: 'admin' as const,
      keyId: null,
      keyName: null,
      via: 'api_key' as const,
    }
    const ctx = { gantry, user, signal: new AbortController().signal }
    const out = await tool.run({ prompt: 'Tool-started adder' }, ctx as any)
    const { task_id } = JSON.parse(out.content)
    expect(task_id).toMatch(/^task-/)
    const listed = JSON.parse((await gantry.tools.get('list_my_tasks')!.run({}, ctx as any)).content)
    expect(listed.some((t: { task_id: string }) => t.task_id === task_id)).toBe(true)
    expect((await tool.run({ prompt: '' }, ctx as any)).isError).toBe(true)
    await finished(server, task_id)
  }, 30_000)
})
