/**
 * A worker paused past its lease writes nothing after the takeover. Two real `bun src/index.ts` processes on one
 * Postgres database with a short JOB_LEASE_MS; the instance holding a chat answer or a task is stopped with
 * SIGSTOP mid-step, the other takes the job over, then the first gets SIGCONT (while the other is still at work,
 * or after it finished). Whatever the resumed worker still had in hand (model tokens in its socket buffer, a
 * reply it had not read yet) must not reach the event log or the rows: every round counts the repeated events.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import postgres from 'postgres'
import { codeReply, MODULES, planReply } from '../plugins/tasks/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freshDatabase, PG_BASE_URL, ROOT, tempDir, waitFor } from './helpers.ts'

const LEASE_MS = 1500
const ROUNDS = 3
/** The first attempt's answer: words a0…a59; a continuation after a takeover says b<n> for the rest. */
const WORDS = 60
const FIRST = Array.from({ length: WORDS }, (_, i) => `a${i}`).join(' ')

type Instance = GantryProcess & { base: string }

describe.skipIf(!PG_BASE_URL)(
  'fencing: SIGSTOP past the lease, SIGCONT after a takeover (needs Postgres)',
  () => {
    let mock: MockOllama
    let database: Awaited<ReturnType<typeof freshDatabase>>
    let sql: ReturnType<typeof postgres>
    const instances: Instance[] = []
    /** Task goal → calls per step; the first `stats` call of each goal answers late (it is in flight when stopped). */
    const taskCalls = new Map<string, { plan: number; mathutil: number; stats: number }>()
    const figures: string[] = []

    beforeAll(async () => {
      mock = await startMockOllama()
      database = await freshDatabase()
      sql = postgres(database.url!, { max: 2, onnotice: () => {} })
      mock.script(({ body }) => {
        const messages = body?.messages ?? []
        const system = String(messages[0]?.content ?? '')
        const text = JSON.stringify(messages)
        const goal = /Build the statistics library, round \d+/.exec(text)?.[0]
        if (goal) {
          const calls = taskCalls.get(goal) ?? { plan: 0, mathutil: 0, stats: 0 }
          taskCalls.set(goal, calls)
          if (system.startsWith('You plan')) {
            calls.plan++
            return { content: planReply(['mathutil', 'stats']) }
          }
          const name = /Write the module (\w+)\.ts/.exec(text)![1] as 'mathutil' | 'stats'
          calls[name]++
          if (name === 'stats' && calls.stats === 1) {
            // The reply the stopped worker finds in its socket when it wakes up: marked, so a stale write shows.
            const code = `${MODULES.stats.code}// written by the first attempt\n`
            return { content: codeReply(code, MODULES.stats.tests), delayMs: 1200 }
          }
          return { content: codeReply(MODULES[name].code, MODULES[name].tests) }
        }
        const last = messages.at(-1)
        if (last?.role === 'assistant') {
          const said = String(last.content).trim().split(/\s+/).length
          const rest = Array.from({ length: WORDS - said }, (_, i) => `b${said + i}`).join(' ')
          return { content: ` ${rest}`, tokensPerSecond: 100 }
        }
        return { content: FIRST, tokensPerSecond: 20 }
      })
      const plugins = tempDir('gantry-plugins-')
      for (const name of ['tasks', 'sessions', 'websocket'])
        symlinkSync(join(ROOT, 'plugins', name), join(plugins, name))
      for (let i = 0; i < 2; i++) {
        const dataDir = tempDir()
        const g = spawnGantry({
          DATA_DIR: dataDir,
          DATABASE_URL: database.url!,
          ADMIN_API_KEY: ADMIN_KEY,
          OLLAMA_HOST: mock.url,
          OLLAMA_MODEL: 'llama3.2',
          PLUGINS_DIR: plugins,
          JOB_LEASE_MS: String(LEASE_MS),
          SHUTDOWN_TIMEOUT_MS: '5000',
        })
        instances.push({ ...g, base: await g.url(30_000) })
      }
    }, 90_000)

    afterAll(async () => {
      for (const i of instances) {
        i.proc.kill('SIGCONT')
        i.proc.kill('SIGKILL')
      }
      await Promise.all(instances.map((i) => i.proc.exited))
      await sql?.end()
      await database?.drop()
      await mock?.stop()
      if (figures.length) console.log(figures.join('\n'))
    })

    const api = async (path: string, init: { method?: string; json?: unknown } = {}, on = instances[0]!) => {
      const res = await fetch(on.base + path, {
        method: init.method ?? 'GET',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: init.json === undefined ? undefined : JSON.stringify(init.json),
      })
      return { status: res.status, body: (await res.json()) as any }
    }

    /** The instance holding job `id` now (by the pid in its lease owner). */
    async function holderOf(id: string): Promise<{ holder: Instance; epoch: number } | undefined> {
      const [job] =
        await sql`select lease_owner, lease_epoch from jobs where id = ${id} and status = 'running'`
      const pid = Number(String(job?.lease_owner ?? '').split(':')[1])
      const holder = instances.find((i) => i.pid === pid)
      return holder && { holder, epoch: Number(job!.lease_epoch) }
    }

    /** Stops the holder, waits for the other instance to claim the job, and returns a way to wake it up. */
    async function stopHolderUntilTakeover(id: string) {
      const { holder, epoch } = (await holderOf(id))!
      holder.proc.kill('SIGSTOP')
      const other = instances.find((i) => i !== holder)!
      await waitFor(
        async () => {
          const now = await holderOf(id)
          return now?.holder === other && now.epoch > epoch
        },
        LEASE_MS * 6,
        'the other instance to take the job over',
      )
      return { stopped: holder, other, wake: () => holder.proc.kill('SIGCONT') }
    }

    test('chat answers: the resumed worker adds no text, no second response', async () => {
      let repeated = 0
      let wrongTexts = 0
      for (let round = 0; round < ROUNDS; round++) {
        const session = await api('/api/sessions', { method: 'POST', json: { name: `fence-${round}` } })
        expect(session.status).toBe(201)
        const sid = session.body.session_id as string
        const chat = await api(`/api/sessions/${sid}/chat`, {
          method: 'POST',
          json: { message: `Count slowly ${round}` },
        })
        expect(chat.status).toBe(202)
        const messageId = chat.body.assistant_message_id as string
        const answerEvents = async () =>
          (
            await sql`select seq, type, data from events where stream = ${sid} and data->>'message_id' = ${messageId} order by seq`
          ).map((r) => ({ seq: Number(r.seq), type: r.type as string, data: r.data as any }))
        await waitFor(
          async () => (await answerEvents()).filter((e) => e.type === 'content').length >= 5,
          15_000,
          'the first instance to stream part of the answer',
        )
        const { other, wake } = await stopHolderUntilTakeover(messageId)
        // Even rounds wake the stopped worker while the other one streams; odd rounds after it has finished.
        if (round % 2 === 1)
          await waitFor(
            async () => (await answerEvents()).some((e) => e.type === 'response'),
            15_000,
            'the other instance to finish',
          )
        wake()
        const message = await waitFor(
          async () => {
            const res = await api(`/api/sessions/${sid}/messages`, {}, other)
            const m = res.body.messages?.find((x: any) => x.message_id === messageId)
            return m?.status === 'complete' ? m : undefined
          },
          20_000,
          'the answer to be stored',
        )
        // Let the woken worker do whatever it still would (its heartbeat runs within a third of the lease).
        await Bun.sleep(LEASE_MS)
        const events = await answerEvents()
        const resumedAt = events.find((e) => e.type === 'notice' && e.data.code === 'resumed')!.seq
        const responses = events.filter((e) => e.type === 'response')
        const stale = events.filter(
          (e) => e.seq > resumedAt && e.type === 'content' && /\ba\d+/.test(String(e.data.content)),
        )
        const afterEnd = events.filter((e) => e.seq > responses[0]!.seq)
        repeated += stale.length + afterEnd.length + Math.max(0, responses.length - 1)
        const text = events
          .filter((e) => e.type === 'content')
          .map((e) => e.data.content)
          .join('')
        // One exact text: what the first attempt streamed, then the continuation, each word once.
        if (text.trim().split(/\s+/).length !== WORDS || message.content !== text) wrongTexts++
      }
      figures.push(
        `fencing: chat answers, ${ROUNDS} SIGSTOP rounds: ${repeated} repeated events, ${wrongTexts} answers with repeated text`,
      )
      expect({ repeated, wrongTexts }).toEqual({ repeated: 0, wrongTexts: 0 })
    }, 120_000)

    test('tasks: the resumed worker writes no second iteration, test result or module', async () => {
      let repeated = 0
      let staleRows = 0
      for (let round = 0; round < ROUNDS; round++) {
        const goal = `Build the statistics library, round ${round}`
        const created = await api('/tasks', { method: 'POST', json: { prompt: goal } })
        expect(created.status).toBe(201)
        const id = created.body.task_id as string
        await waitFor(
          () => taskCalls.get(goal)?.stats === 1 && mock.activeGenerations > 0,
          30_000,
          'the stats generation',
        )
        const { other, wake } = await stopHolderUntilTakeover(id)
        if (round % 2 === 1)
          await waitFor(
            async () => (await api(`/tasks/${id}`, {}, other)).body.status === 'completed',
            30_000,
            'the other instance to complete the task',
          )
        wake()
        await waitFor(
          async () => (await api(`/tasks/${id}`, {}, other)).body.status === 'completed',
          30_000,
          'the task to complete',
        )
        await Bun.sleep(LEASE_MS * 2) // the woken worker's stale reply is read at once, its tests take ~1 s
        const events = await sql`select seq, type, data from events where stream = ${id} order by seq`
        expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1))
        const terminal = events.findIndex((e) => e.type === 'TASK_COMPLETE')
        const seen = new Map<string, number>()
        const resumed = events.findIndex(
          (e) => e.type === 'LOG' && String((e.data as any).message).startsWith('Task resumed'),
        )
        for (const e of events.slice(resumed)) {
          const d = e.data as any
          const key =
            e.type === 'LOG'
              ? `LOG ${d.message}`
              : `${e.type} ${d?.module ?? ''} ${d?.iteration ?? ''}`.trim()
          seen.set(key, (seen.get(key) ?? 0) + 1)
        }
        for (const count of seen.values()) repeated += count - 1
        repeated += events.length - 1 - terminal // nothing may follow the terminal event
        const [stats] = await sql`select code from task_modules where task_id = ${id} and name = 'stats'`
        if (String(stats?.code).includes('first attempt')) staleRows++
        const results = await api(`/tasks/${id}/results`, {}, other)
        expect(results.body.modules.map((m: any) => m.quality_score)).toEqual([1, 1])
      }
      figures.push(
        `fencing: tasks, ${ROUNDS} SIGSTOP rounds: ${repeated} repeated events, ${staleRows} stale module rows`,
      )
      expect({ repeated, staleRows }).toEqual({ repeated: 0, staleRows: 0 })
    }, 180_000)
  },
)
