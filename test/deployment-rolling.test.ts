/**
 * A rolling restart behind the shipped nginx.conf: two instances on one Postgres, restarted one at a time with
 * SIGTERM while clients keep working — steady HTTP requests, WebSockets following a running task and a chat
 * answer the simulated Ollama streams slowly. No request fails (nginx retries the other upstream while an
 * instance drains or is down), every socket closed with 1001 resumes with `?since=`, and the task and the
 * answer carry on across both restarts, every event exactly once.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { planReply } from '../plugins/tasks/testing.ts'
import {
  type Deployment,
  type Follower,
  follow,
  followSse,
  type Instance,
  startDeployment,
} from './deployment-world.ts'
import { ADMIN_KEY, PG_BASE_URL, waitFor } from './helpers.ts'
import { HAVE_NGINX } from './nginx-harness.ts'

const MODULES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta']
const moduleCode = (name: string) =>
  JSON.stringify({
    code: `export const ${name} = (): string => '${name}'\n`,
    tests: `import { expect, test } from 'bun:test'\nimport { ${name} } from './${name}.ts'\ntest('names itself', () => expect(${name}()).toBe('${name}'))\n`,
  })
const ANSWER = Array.from({ length: 240 }, (_, i) => `word${i}`).join(' ')

/** A non-streaming OpenAI completion straight to one instance (the model answers `slow request …` slowly). */
async function completion(base: string, content: string) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content }] }),
  }).catch((err: Error) => ({ status: err.message, json: async () => ({}) }))
  const body = (await res.json().catch(() => ({}))) as any
  return { status: res.status, content: body.choices?.[0]?.message?.content }
}

interface Outcome {
  what: string
  status: number | string
}

/** One steady client: `workers` loops of idempotent reads and ticket requests (a POST) until stopped. */
function steadyLoad(world: Deployment, paths: () => string[], workers = 3) {
  const outcomes: Outcome[] = []
  let running = true
  const loop = async (n: number) => {
    for (let i = n; running; i++) {
      const list = paths()
      const path = list[i % list.length]!
      const post = path === '/api/ws-ticket'
      try {
        const res = await world.api(path, post ? { method: 'POST', json: {} } : {})
        outcomes.push({ what: `${post ? 'POST' : 'GET'} ${path}`, status: res.status })
      } catch (err) {
        outcomes.push({ what: path, status: String((err as Error).message) })
      }
      // Under nginx's per-client limit (20 r/s, burst 40): the load is one busy client, not a flood.
      await Bun.sleep(250)
    }
  }
  // One client whose requests take seconds (a non-streaming OpenAI completion): always one in flight somewhere.
  const slow = async () => {
    for (let i = 0; running; i++) {
      const what = `POST /v1/chat/completions (slow request ${i})`
      try {
        const res = await world.api('/v1/chat/completions', {
          method: 'POST',
          json: { model: 'llama3.2', messages: [{ role: 'user', content: `slow request ${i}` }] },
        })
        outcomes.push({ what, status: res.status })
        if (res.status === 200 && res.body.choices?.[0]?.message?.content !== `answer to slow request ${i}`)
          outcomes.push({ what, status: `wrong answer ${JSON.stringify(res.body).slice(0, 200)}` })
      } catch (err) {
        outcomes.push({ what, status: String((err as Error).message) })
      }
    }
  }
  const loops = [...Array.from({ length: workers }, (_, n) => loop(n)), slow()]
  return {
    outcomes,
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}

describe.skipIf(!PG_BASE_URL || !HAVE_NGINX)(
  'rolling restart behind nginx (needs Postgres and nginx)',
  () => {
    let world: Deployment

    beforeAll(async () => {
      world = await startDeployment(2, { JOB_LEASE_MS: '3000', TASK_CONCURRENCY: '2' })
    }, 90_000)
    afterAll(async () => {
      await world?.stop()
    })

    test('instances restarted one at a time under load: no failed request, every socket resumes, nothing stops', async () => {
      const goal = 'Build the greek alphabet across a rolling restart'
      const chatCalls: { continued: boolean }[] = []
      world.ollama.script(({ body }) => {
        const messages = body?.messages ?? []
        const last = messages.at(-1)
        const slow = /^slow request .+$/.exec(String(last?.content))
        if (slow) return { content: `answer to ${slow[0]}`, delayMs: 2500 }
        if (JSON.stringify(messages).includes(goal)) {
          if (String(messages[0].content).startsWith('You plan')) return { content: planReply(MODULES) }
          // Each module takes a while to write, so the task spans both restarts.
          return {
            content: moduleCode(/Write the module (\w+)\.ts/.exec(JSON.stringify(messages))![1]!),
            delayMs: 3000,
          }
        }
        // The chat answer: slow, and continued from where it stopped when its instance goes away.
        const continued = last?.role === 'assistant'
        chatCalls.push({ continued })
        if (continued) {
          expect(ANSWER.startsWith(last.content)).toBe(true)
          return { content: ANSWER.slice(last.content.length), tokensPerSecond: 15 }
        }
        return { content: ANSWER, tokensPerSecond: 10 }
      })

      const task = await world.api('/tasks', { method: 'POST', json: { prompt: goal } })
      expect(task.status).toBe(201)
      const taskId = task.body.task_id as string
      const session = await world.api('/api/sessions', { method: 'POST', json: { name: 'rolling' } })
      expect(session.status).toBe(201)
      const sessionId = session.body.session_id as string

      // Several sockets per stream, so nginx spreads them over both instances.
      const taskFollowers: Follower[] = []
      const chatFollowers: Follower[] = []
      for (let n = 0; n < 3; n++) {
        taskFollowers.push(await follow(world.nginx, taskId))
        chatFollowers.push(await follow(world.nginx, sessionId))
      }
      // And one browser-like SSE client per stream, resuming with Last-Event-ID.
      const taskSse = await followSse(world.nginx, taskId, (e) => e.type === 'TASK_COMPLETE')
      const chatSse = await followSse(world.nginx, sessionId, (e) => e.type === 'response')
      const chat = await world.api(`/api/sessions/${sessionId}/chat`, {
        method: 'POST',
        json: { message: 'Count slowly to two hundred and forty' },
      })
      expect(chat.status).toBe(202)
      const load = steadyLoad(world, () => [
        '/health',
        `/tasks/${taskId}`,
        `/api/sessions/${sessionId}`,
        '/api/me',
        '/api/ws-ticket',
        `/api/sessions/${sessionId}/messages`,
      ])
      await chatFollowers[0]!.until((f) => f.type === 'content', 15_000)
      await taskFollowers[0]!.until((f) => f.type === 'MODULE_STARTED', 15_000)

      const exitCodes: number[] = []
      // The instance writing the answer goes first; the second restart then finds the task and the answer
      // (moved over) both on the instance it stops, so each is interrupted at least once.
      const writer = await waitFor(
        () => world.holderOf(chat.body.assistant_message_id),
        10_000,
        'the answer’s job',
      )
      for (const instance of [writer, ...world.instances.filter((i) => i !== writer)]) {
        await servedRequests(instance)
        // A request this very instance is answering when told to stop: the drain lets it finish.
        const asked = `slow request on ${instance.name}`
        const inFlight = completion(instance.url, asked)
        await waitFor(
          () => world.ollama.requests.some((r) => JSON.stringify(r.body ?? '').includes(asked)),
          5000,
          'the completion to reach the model',
        )
        instance.process.proc.kill('SIGTERM')
        exitCodes.push(await instance.process.exit())
        expect(await inFlight).toEqual({ status: 200, content: `answer to ${asked}` })
        await world.restart(instance)
        // The next instance goes only once nginx sends this one traffic again (a real rollout waits for /ready).
        await servedRequests(instance)
      }
      expect(exitCodes).toEqual([0, 0])

      const isEnd = (types: string[]) => (f: any) => types.includes(f.type)
      for (const f of taskFollowers)
        await f.until(isEnd(['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED']), 60_000)
      for (const f of chatFollowers) await f.until(isEnd(['response', 'error']), 60_000)
      await taskSse.until(20_000)
      await chatSse.until(20_000)
      await load.stop()
      for (const f of [...taskFollowers, ...chatFollowers]) f.close()
      await taskSse.close()
      await chatSse.close()

      // No request failed, and the load really ran through both restarts.
      const failed = load.outcomes.filter((o) => typeof o.status !== 'number' || o.status >= 400)
      if (failed.length) console.error(`nginx's error log:\n${world.nginx.errorLog()}`)
      expect(failed).toEqual([])
      expect(load.outcomes.length).toBeGreaterThan(60)

      // Every socket on a restarted instance was closed with 1001 and resumed; each ended with the whole stream.
      // The SSE clients were cut too (by the instance they were on stopping) and came back.
      expect(taskSse.reconnects + chatSse.reconnects).toBeGreaterThanOrEqual(1)
      const drops = [...taskFollowers, ...chatFollowers].flatMap((f) => f.drops)
      expect(drops.length).toBeGreaterThanOrEqual(2)
      expect(new Set(drops)).toEqual(new Set([1001]))
      for (const [stream, followers] of [
        [taskId, taskFollowers],
        [sessionId, chatFollowers],
      ] as const) {
        const stored = (await world.sql`select seq from events where stream = ${stream} order by seq`).map(
          (e) => e.seq,
        )
        expect(stored).toEqual(stored.map((_, i) => i + 1))
        for (const f of followers) {
          expect(f.events.map((e) => e.seq)).toEqual(stored)
          expect(f.connections).toBe(f.drops.length + 1)
        }
        const sse = stream === taskId ? taskSse : chatSse
        expect(sse.events.map((e) => e.seq)).toEqual(stored)
      }

      // The task went on to the end, never failed; the answer is whole and exact, said once.
      const taskEvents = taskFollowers[0]!.events
      expect(taskEvents.at(-1)!.type).toBe('TASK_COMPLETE')
      expect(taskEvents.filter((e) => e.type === 'MODULE_COMPLETE').map((e) => e.data.module)).toEqual(
        MODULES.map((m) => `${m}.ts`),
      )
      const chatEvents = chatFollowers[0]!.events
      expect(
        chatEvents
          .filter((e) => e.type === 'content')
          .map((e) => e.data.content)
          .join(''),
      ).toBe(ANSWER)
      expect(chatEvents.filter((e) => e.type === 'response')).toHaveLength(1)
      // Both were really interrupted: the second restart finds everything on the instance it stops.
      const logs = taskEvents.filter((e) => e.type === 'LOG').map((e) => String(e.data.message))
      expect(logs.some((m) => m.startsWith('Server stopping'))).toBe(true)
      expect(logs.some((m) => m.startsWith('Task resumed'))).toBe(true)
      expect(chatCalls.filter((c) => c.continued).length).toBeGreaterThanOrEqual(1)
      const answer = await waitFor(
        async () => {
          const messages = await world.api(`/api/sessions/${sessionId}/messages`)
          const m = messages.body.messages.find((x: any) => x.message_id === chat.body.assistant_message_id)
          return m && !['pending', 'streaming'].includes(m.status) ? m : undefined
        },
        10_000,
        'the stored answer',
      )
      expect(answer).toMatchObject({ status: 'complete', content: ANSWER })
    }, 180_000)

    /** Waits until the instance's current process has answered requests from nginx (its log has request lines). */
    async function servedRequests(instance: Instance) {
      await waitFor(
        () =>
          instance.records().filter((r) => r.msg === 'request' && /^[0-9a-f]{32}$/.test(r.reqId)).length >= 3,
        20_000,
        `instance ${instance.name} to serve requests through nginx`,
      )
    }
  },
)
