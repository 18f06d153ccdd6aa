/**
 * Cross-process: a chat answer survives the instance generating it. Real `bun src/index.ts` processes on one
 * fresh Postgres database, the simulated Ollama in this process. Instance A starts the answer and is killed
 * (SIGKILL) mid-stream; instance B takes the job over once its lease expires and continues the partial answer.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freshDatabase, PG_BASE_URL, waitFor } from './helpers.ts'

const FULL = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ')
let ollama: MockOllama
let database: Awaited<ReturnType<typeof freshDatabase>>
const dirs: string[] = []
const procs: ReturnType<typeof Bun.spawn>[] = []

function startInstance(env: Record<string, string>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-takeover-'))
  dirs.push(dataDir)
  const g = spawnGantry({
    DATA_DIR: dataDir,
    DATABASE_URL: database.url!,
    ADMIN_API_KEY: ADMIN_KEY,
    OLLAMA_HOST: ollama.url,
    OLLAMA_MODEL: 'llama3.2',
    JOB_LEASE_MS: '1000',
    ...env,
  })
  procs.push(g.proc)
  return { proc: g.proc, url: g.url() }
}

beforeAll(async () => {
  if (!PG_BASE_URL) return
  ollama = await startMockOllama()
  database = await freshDatabase()
}, 60_000)

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL')
  await Promise.all(procs.map((p) => p.exited))
  await ollama?.stop()
  await database?.drop()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

test.skipIf(!PG_BASE_URL)(
  'an instance killed mid-answer: another one finishes it, text exact and whole',
  async () => {
    // The first attempt streams slowly; a continuation (a trailing partial assistant message) gets the rest.
    ollama.script(({ body }) => {
      const last = body.messages.at(-1)
      if (last?.role === 'assistant') {
        expect(FULL.startsWith(last.content)).toBe(true)
        return { content: FULL.slice(last.content.length), tokensPerSecond: 200 }
      }
      return { content: FULL, tokensPerSecond: 25 }
    })
    const a = startInstance({})
    const urlA = await a.url
    const api = async (base: string, path: string, init: RequestInit = {}) => {
      const res = await fetch(base + path, {
        ...init,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      })
      return { status: res.status, body: (await res.json()) as any }
    }
    const session = await api(urlA, '/api/sessions', {
      method: 'POST',
      body: JSON.stringify({ name: 'durable' }),
    })
    expect(session.status).toBe(201)
    const sid = session.body.session_id
    const chat = await api(urlA, `/api/sessions/${sid}/chat`, {
      method: 'POST',
      body: JSON.stringify({ message: 'Count slowly' }),
    })
    expect(chat.status).toBe(202)

    const sql = postgres(database.url!, { max: 1, onnotice: () => {} })
    try {
      const contentEvents = async () =>
        (
          await sql`select data->>'content' as content from events where stream = ${sid} and type = 'content' order by seq`
        ).map((r) => r.content as string)
      await waitFor(async () => (await contentEvents()).length >= 5, 15_000, 'A to stream some of the answer')
      a.proc.kill('SIGKILL')
      await a.proc.exited
      const partial = (await contentEvents()).join('')
      expect(partial.length).toBeGreaterThan(0)
      expect(partial.length).toBeLessThan(FULL.length)

      const b = startInstance({})
      const urlB = await b.url
      const message = await waitFor(
        async () => {
          const res = await api(urlB, `/api/sessions/${sid}/messages`)
          const m = res.body.messages?.find((x: any) => x.message_id === chat.body.assistant_message_id)
          return m?.status === 'complete' ? m : undefined
        },
        20_000,
        'B to finish the answer',
      )
      expect(message.content).toBe(FULL)
      // Every client following the log saw the exact text once: A's deltas, then B's continuation.
      expect((await contentEvents()).join('')).toBe(FULL)
      const types = (await sql`select type from events where stream = ${sid} order by seq`).map((r) => r.type)
      expect(types.filter((t) => t === 'response')).toHaveLength(1)
      expect(types).toContain('notice') // "resumed"
      // The job row closes just after the answer's last event and message (the event is written first).
      const job = await waitFor(
        async () =>
          (
            await sql`select status, attempts from jobs where id = ${chat.body.assistant_message_id} and status <> 'running'`
          )[0],
        10_000,
        'the job row to close',
      )
      expect(job).toMatchObject({ status: 'succeeded', attempts: 2 })
      // B asked Ollama to continue A's partial answer rather than starting over.
      const continuation = ollama.requests.filter((r) => r.path === '/api/chat').at(-1)!.body
      expect(continuation.messages.at(-1)).toEqual({ role: 'assistant', content: partial })
      b.proc.kill('SIGTERM')
      await b.proc.exited
    } finally {
      await sql.end()
    }
  },
  90_000,
)
