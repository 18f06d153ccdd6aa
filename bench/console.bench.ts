/**
 * bench/console: the web console beside a bare page that does the same jobs with no framework (bench/
 * console-bare.html), in headless Chromium on loopback, each against a real Gantry on its own database with
 * the simulated Ollama:
 *   (a) HTML, JS and CSS shipped for the first page, gzipped (noVNC and the highlighter excluded), and the time
 *       from navigation to a usable sign-in form and to a usable task form (signed in, empty cache);
 *   (b) a chat answer streamed at 100 tokens/s: a token's arrival on the socket → the frame that shows it is
 *       painted (p50/p99/max), and long tasks (> 50 ms) meanwhile;
 *   (c) a task timeline of 5,000 events: frame times while it scrolls, and how many DOM nodes it holds.
 * Goals (issue 9): ≤ 150 KB gzipped; p99 ≤ 16 ms with no long task; the timeline stays scrollable.
 *   bun bench/console.bench.ts [tokens, default 400] [console|bare: only that one]
 * With DATABASE_URL, each server gets a fresh database on that server (dropped after); else PGlite in memory.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { PAGE_PROVIDER } from '../src/core/routes.ts'
import { launchBrowser, signIn } from '../test/browser.ts'
import { startMockOllama } from '../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../test/helpers.ts'
import { addProbes, paintedCount, percentile, probeState, scrollFrames } from './console-probes.ts'
import { startPacedTap } from './console-tap.ts'

const TOKENS = Number(process.argv[2] ?? 400)
const KINDS = (process.argv[3] ? [process.argv[3]] : ['console', 'bare']) as Kind[]
const TOKENS_PER_SECOND = 100
const TIMELINE_EVENTS = 5000
const SCROLL_MS = 2000
const BARE_PAGE = readFileSync(join(import.meta.dir, 'console-bare.html'), 'utf8')
// Loaded only when a page needs them; the issue leaves them out of the first page's budget.
const LAZY = /novnc|\/vnc\/|rfb|highlight|hljs/i

const word = (i: number) => `w${String(i).padStart(5, '0')}`
const answer = (n: number) =>
  Array.from({ length: n }, (_, i) => (i > 0 && i % 40 === 0 ? `\n\n${word(i + 1)}` : word(i + 1))).join(' ')

const ollama = await startMockOllama()
ollama.script(({ body }) => {
  const m = /^stream (\d+)/.exec(body.messages?.at(-1)?.content ?? '')
  // Unpaced here: the tap below paces the answer (the simulator's own pacing drifts on a busy machine).
  if (m) return { content: answer(Number(m[1])) }
  // A task's planning call: it never finishes, so the task stays running while the bench fills its timeline.
  if (body.format) return { hang: true }
  return undefined
})

const tap = startPacedTap(ollama.url, TOKENS_PER_SECOND)

type Kind = 'console' | 'bare'
/** How each page reaches a chat session and a task: by its URL (both use hash routes). */
const navigate: Record<
  Kind,
  {
    chat(page: Page, id: string, title: string): Promise<void>
    task(page: Page, id: string, prompt: string): Promise<void>
  }
> = {
  console: {
    chat: async (page, id) => void (await page.goto(`${page.url().split('#')[0]}#/chat/${id}`)),
    task: async (page, id) => void (await page.goto(`${page.url().split('#')[0]}#/tasks/${id}`)),
  },
  bare: {
    chat: async (page, id) => void (await page.goto(`${page.url().split('#')[0]}#chat/${id}`)),
    task: async (page, id) => void (await page.goto(`${page.url().split('#')[0]}#task/${id}`)),
  },
}

interface Figures {
  firstPageKB: number
  firstPageHtmlKB: number
  signInMs: number
  tasksMs: number
  tokens: string
  rate: number
  p50: number
  p99: number
  max: number
  longTasks: number
  longestTask: number
  frameP50: number
  frameP99: number
  frameMax: number
  slowFrames: number
  timelineNodes: number
  timelineReadyMs: number
}

/** Loads the page's `/` in a fresh context until `label` is usable; returns the time and what was shipped. */
async function firstLoad(browser: Browser, origin: string, label: string, storageState?: any) {
  const context = await browser.newContext({ storageState })
  const page = await context.newPage()
  await addProbes(page, label)
  const shipped: Promise<{ kind: string; gz: number }[]>[] = []
  page.on('response', (res) => {
    const kind = res.request().resourceType()
    if (!['document', 'script', 'stylesheet'].includes(kind) || LAZY.test(res.url())) return
    const gz = (data: string | Uint8Array<ArrayBuffer>) => Bun.gzipSync(data).length
    shipped.push(
      res.body().then(
        (body) => {
          if (kind !== 'document') return [{ kind, gz: gz(new Uint8Array(body)) }]
          // Script and style inside the HTML (the bare page has nothing else) count as JS and CSS too.
          const inline = [...body.toString().matchAll(/<(script|style)[^>]*>([\s\S]*?)<\/\1>/g)]
          const code = inline.map((m) => m[2]).join('')
          return [
            { kind, gz: gz(new Uint8Array(body)) },
            { kind: 'inline', gz: code ? gz(code) : 0 },
          ]
        },
        () => [],
      ),
    )
  })
  await page.goto(`${origin}/`)
  const interactiveAt = () => page.evaluate(() => (window as any).__probe.interactiveAt as number | null)
  const ms = await waitFor(
    async () => {
      await Bun.sleep(50)
      const at = await interactiveAt()
      return at !== null && at > 0 && at
    },
    20_000,
    `"${label}"`,
  )
  await page.waitForTimeout(300)
  const sizes = (await Promise.all(shipped)).flat()
  const kb = (kinds: string[]) =>
    sizes.filter((s) => kinds.includes(s.kind)).reduce((n, s) => n + s.gz, 0) / 1024
  return {
    context,
    page,
    ms,
    jsCssKB: kb(['script', 'stylesheet', 'inline']),
    allKB: kb(['document', 'script', 'stylesheet']),
  }
}

async function measure(kind: Kind, browser: Browser, server: TestServer): Promise<Figures> {
  const origin = server.url
  const signInLoad = await firstLoad(browser, origin, 'API key')
  await signIn(signInLoad.page, origin, ADMIN_KEY)
  const signedIn = await signInLoad.context.storageState()
  await signInLoad.context.close()
  const tasksLoad = await firstLoad(browser, origin, 'Prompt', signedIn)
  const context: BrowserContext = tasksLoad.context

  // (b) the chat answer
  const title = `bench chat ${kind}`
  const session = await server.api('/api/sessions', {
    method: 'POST',
    json: { name: `bench-${kind}`, title },
  })
  if (session.status !== 201) throw new Error(`session: ${session.status} ${JSON.stringify(session.body)}`)
  const chat = await context.newPage()
  await addProbes(chat, 'Message')
  await chat.goto(`${origin}/`)
  await navigate[kind].chat(chat, session.body.session_id, title)
  await chat.getByLabel('Message', { exact: true }).fill(`stream ${TOKENS}`)
  const sentAt = await chat.evaluate(() => performance.now())
  await chat.getByRole('button', { name: 'Send', exact: true }).click()
  // Polled gently: this process also runs both servers and the simulated Ollama, whose pace must hold.
  await waitFor(
    async () => {
      await Bun.sleep(250)
      return (await paintedCount(chat)) >= TOKENS
    },
    TOKENS * 20 + 10_000,
    `${TOKENS} tokens painted`,
  ).catch((err) => console.error(`${kind}: ${err.message}`))
  const streamed = await probeState(chat)
  const arrivalTimes = Object.values(streamed.arrivals)
  const rate = (arrivalTimes.length - 1) / ((Math.max(...arrivalTimes) - Math.min(...arrivalTimes)) / 1000)
  const latencies = Object.entries(streamed.paints).map(([t, at]) => at - streamed.arrivals[t]!)
  const chatLong = streamed.longTasks.filter((t) => t.start >= sentAt)
  await chat.close()

  // (c) the 5,000-event timeline of a running task
  const prompt = `Bench timeline ${kind}`
  const task = await server.api('/tasks', { method: 'POST', json: { prompt } })
  if (task.status !== 201 && task.status !== 202)
    throw new Error(`task: ${task.status} ${JSON.stringify(task.body)}`)
  const taskId = task.body.task_id as string
  await waitFor(
    async () => (await server.api(`/tasks/${taskId}`)).body.status === 'running',
    20_000,
    'task running',
  )
  const events = server.running.gantry.events
  for (let i = 0; i < TIMELINE_EVENTS; i += 500)
    await events.appendMany(
      taskId,
      Array.from({ length: 500 }, (_, k) =>
        (i + k) % 5 === 4
          ? {
              type: 'MODULE_ITERATION',
              data: {
                module: `m${(i + k) % 7}.ts`,
                iteration: i + k,
                test_pass_rate: 0.5,
                note: word(i + k + 1),
              },
            }
          : {
              type: 'LOG',
              data: { level: 'INFO', message: `step ${word(i + k + 1)} of the bench timeline` },
            },
      ),
    )
  const timeline = await context.newPage()
  await addProbes(timeline, 'Prompt')
  await timeline.goto(`${origin}/`)
  const openedAt = await timeline.evaluate(() => performance.now())
  await navigate[kind].task(timeline, taskId, prompt)
  // Ready once the last event has arrived and the frame after it is painted (or, failing that, after 10 s).
  const last = word(TIMELINE_EVENTS)
  const arrived = (token: string) =>
    timeline.evaluate((token) => (window as any).__probe.arrivals[token] !== undefined, token)
  const ready = await waitFor(
    async () => {
      await Bun.sleep(100)
      return (await arrived(last)) && probeState(timeline)
    },
    10_000,
    'the whole timeline',
  ).catch(() => null)
  const readyAt = ready ? Math.max(...Object.values(ready.arrivals)) : Number.NaN
  await timeline.waitForTimeout(500)
  const scroll = await scrollFrames(timeline, SCROLL_MS)
  await context.close()

  return {
    firstPageKB: tasksLoad.jsCssKB,
    firstPageHtmlKB: tasksLoad.allKB,
    signInMs: signInLoad.ms,
    tasksMs: tasksLoad.ms,
    tokens: `${latencies.length}/${TOKENS}`,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: Math.max(...latencies),
    rate,
    longTasks: chatLong.length,
    longestTask: Math.max(0, ...chatLong.map((t) => t.duration)),
    frameP50: percentile(scroll.frames, 50),
    frameP99: percentile(scroll.frames, 99),
    frameMax: Math.max(...scroll.frames),
    slowFrames: scroll.frames.filter((f) => f > 1000 / 60 + 8).length,
    timelineNodes: scroll.nodes,
    timelineReadyMs: readyAt - openedAt,
  }
}

const results = new Map<Kind, Figures>()
const startedAt = performance.now()
const browser = await launchBrowser()
const chromiumVersion = browser.version()
/** A server for each page, started together (the same code; the bare page's has the console plugin off). */
async function serverFor(kind: Kind): Promise<TestServer> {
  const env: Record<string, string> = { OLLAMA_HOST: tap.url, LOG_LEVEL: 'warn' }
  if (kind === 'bare') env.PLUGINS_DISABLED = 'console'
  const server = await startTestServer(env)
  if (kind === 'bare')
    server.running.gantry.state.set(
      PAGE_PROVIDER,
      () => new Response(BARE_PAGE, { headers: { 'content-type': 'text/html; charset=utf-8' } }),
    )
  return server
}
const starting = KINDS.map(serverFor)
const servers = await Promise.allSettled(starting)
try {
  for (const [i, kind] of KINDS.entries()) {
    const outcome = servers[i]!
    if (outcome.status === 'rejected') throw outcome.reason
    const server = outcome.value
    // The console builds itself on first start when its build is missing; wait for it rather than measure that.
    await waitFor(
      async () => (await fetch(`${server.url}/`, { headers: { accept: 'text/html' } })).status === 200,
      180_000,
      'the console build',
    )
    results.set(kind, await measure(kind, browser, server))
  }
} finally {
  await browser.close()
  for (const outcome of servers) if (outcome.status === 'fulfilled') await outcome.value.stop()
  tap.stop()
  await ollama.stop()
}

const rows: [string, keyof Figures, number, string][] = [
  ['JS+CSS of the first page (inline too), KB gzip', 'firstPageKB', 1, '≤ 150'],
  ['HTML+JS+CSS of the first page, KB gzip', 'firstPageHtmlKB', 1, ''],
  ['sign-in form usable, ms', 'signInMs', 0, ''],
  ['task form usable (signed in, cold cache), ms', 'tasksMs', 0, ''],
  ['chat tokens painted', 'tokens', 0, ''],
  ['tokens/s as they arrived', 'rate', 0, '100'],
  ['token arrival → paint p50, ms', 'p50', 1, ''],
  ['token arrival → paint p99, ms', 'p99', 1, '≤ 16'],
  ['token arrival → paint max, ms', 'max', 1, ''],
  ['long tasks while streaming', 'longTasks', 0, '0'],
  ['longest task while streaming, ms', 'longestTask', 0, '≤ 50'],
  [`timeline of ${TIMELINE_EVENTS}: all arrived, ms`, 'timelineReadyMs', 0, ''],
  ['timeline scroll frame p50, ms', 'frameP50', 1, ''],
  ['timeline scroll frame p99, ms', 'frameP99', 1, ''],
  ['timeline scroll frame max, ms', 'frameMax', 1, ''],
  ['frames over 25 ms while scrolling', 'slowFrames', 0, ''],
  ['DOM nodes with the timeline open', 'timelineNodes', 0, ''],
]
const none = {} as Figures
const c = results.get('console') ?? none
const b = results.get('bare') ?? none
const table = [['', 'console', 'bare page', 'console/bare', 'goal']]
for (const [label, key, digits, goal] of rows) {
  const [x, y] = [c[key], b[key]]
  const show = (v: number | string | undefined) => (typeof v === 'number' ? v.toFixed(digits) : (v ?? '-'))
  const ratio = typeof x === 'number' && typeof y === 'number' && y > 0 ? `${(x / y).toFixed(2)}×` : ''
  table.push([label, show(x), show(y), ratio, goal])
}
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
console.log(
  `headless Chromium ${chromiumVersion} on loopback; ${TOKENS} tokens at ${TOKENS_PER_SECOND}/s; database: ${process.env.DATABASE_URL ? 'Postgres' : 'PGlite'}`,
)
for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '))
console.log(`(whole run ${((performance.now() - startedAt) / 1000).toFixed(1)} s)`)
process.exit(0)
