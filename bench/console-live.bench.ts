/**
 * bench/console-live: how long a chat token takes from the model to the console's page, with live tokens
 * (`?tentative=1`, what the console asks for) beside the same console on a stock socket (committed events
 * only: the page's WebSocket has `tentative=1` taken off its URL), in turns in one run, one Gantry, headless
 * Chromium on loopback. A paced tap between Gantry and the simulated Ollama notes when each word leaves the
 * "model"; a MutationObserver in the page notes when it is first in the answer's DOM (same machine, same
 * epoch clock). Also the server's CPU per token (from /proc) in each mode.
 *   bun bench/console-live.bench.ts [tokens per answer, default 200] [rounds, default 2]
 * With DATABASE_URL the server gets a fresh database on that server (a commit there costs a WAL flush); else PGlite.
 */
import { readFileSync } from 'node:fs'
import { launchBrowser, signIn } from '../test/browser.ts'
import { startMockOllama } from '../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, waitFor } from '../test/helpers.ts'
import { percentile } from './console-probes.ts'
import { startPacedTap } from './console-tap.ts'

const TOKENS = Number(process.argv[2] ?? 200)
const ROUNDS = Number(process.argv[3] ?? 2)
const TOKENS_PER_SECOND = 100
const word = (i: number) => `w${String(i).padStart(5, '0')}`
const answer = (n: number) => Array.from({ length: n }, (_, i) => word(i)).join(' ')

const ollama = await startMockOllama()
ollama.script(({ body }) => {
  const m = /^stream (\d+)/.exec(body.messages?.at(-1)?.content ?? '')
  return m ? { content: answer(Number(m[1])) } : undefined
})

/** When each word left the tap, by word (the tap hands line k on at start + k/rate, absolute due times). */
let sentAt = new Map<string, number>()
let text = ''
const tap = startPacedTap(ollama.url, TOKENS_PER_SECOND, (line, at) => {
  const before = text.length
  text += JSON.parse(line).message?.content ?? ''
  for (const m of text.slice(Math.max(0, before - 6)).matchAll(/w\d{5}/g))
    if (!sentAt.has(m[0])) sentAt.set(m[0], at)
})

const server = await startTestServer({ OLLAMA_HOST: tap.url, LOG_LEVEL: 'warn' })
const browser = await launchBrowser()
const cpu = () => {
  // utime + stime of this process (the server runs in it), in clock ticks of 10 ms.
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

type Mode = 'live tokens (?tentative=1)' | 'stock socket (committed first)'
const MODES: Mode[] = ['live tokens (?tentative=1)', 'stock socket (committed first)']
const latencies = new Map<Mode, number[]>(MODES.map((m) => [m, []]))
const cpuMs = new Map<Mode, number>(MODES.map((m) => [m, 0]))

async function run(mode: Mode, round: number) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await context.newPage()
  const seen = new Map<string, number>()
  await page.exposeFunction('__wordsSeen', (words: string[], at: number) => {
    for (const w of words) if (!seen.has(w)) seen.set(w, at)
  })
  await page.addInitScript((stock: boolean) => {
    if (stock) {
      const Native = window.WebSocket
      window.WebSocket = class extends Native {
        constructor(url: string | URL, protocols?: string | string[]) {
          const u = new URL(url)
          u.searchParams.delete('tentative')
          super(u, protocols)
        }
      } as typeof WebSocket
    }
    let count = 0
    new MutationObserver(() => {
      const md = document.querySelector('article[data-role=assistant] .md')
      const words = md?.textContent?.match(/w\d{5}/g) ?? []
      if (words.length <= count) return
      const fresh = words.slice(count)
      count = words.length
      ;(window as any).__wordsSeen(fresh, performance.timeOrigin + performance.now())
    }).observe(document, { subtree: true, childList: true, characterData: true })
  }, mode.startsWith('stock'))
  const created = await server.api('/api/sessions', {
    method: 'POST',
    json: { title: `live ${round} ${mode.slice(0, 5)}` },
  })
  const id = created.body.session_id as string
  await signIn(page, server.url, ADMIN_KEY)
  await page.goto(`${server.url}/#/chat/${id}`)
  await page.locator('#chat-input').waitFor()
  await Bun.sleep(300)
  sentAt = new Map()
  text = ''
  const cpuBefore = cpu()
  await page.locator('#chat-input').fill(`stream ${TOKENS}`)
  await page.getByRole('button', { name: 'Send', exact: true }).click()
  await waitFor(() => seen.has(word(TOKENS - 1)), 60_000, 'the last word on the page')
  cpuMs.set(mode, cpuMs.get(mode)! + cpu() - cpuBefore)
  for (const [w, at] of seen) {
    const sent = sentAt.get(w)
    if (sent !== undefined) latencies.get(mode)!.push(at - sent)
  }
  await context.close()
}

try {
  for (let round = 1; round <= ROUNDS; round++)
    for (const mode of round % 2 ? MODES : [...MODES].reverse()) await run(mode, round)
} finally {
  await browser.close()
  await server.stop()
  tap.stop()
  await ollama.stop()
}

const f = (n: number) => n.toFixed(1)
console.log(
  `console chat, model → page DOM; ${ROUNDS} rounds × ${TOKENS} tokens at ${TOKENS_PER_SECOND}/s; database: ${process.env.DATABASE_URL ? 'Postgres' : 'PGlite'}`,
)
console.log('| mode | words | p50 ms | p90 ms | p99 ms | server+tap CPU ms per token |')
console.log('|---|---:|---:|---:|---:|---:|')
const p50 = new Map<Mode, number>()
for (const mode of MODES) {
  const l = latencies.get(mode)!.sort((a, b) => a - b)
  p50.set(mode, percentile(l, 50))
  console.log(
    `| ${mode} | ${l.length} | ${f(percentile(l, 50))} | ${f(percentile(l, 90))} | ${f(percentile(l, 99))} | ${f(cpuMs.get(mode)! / (ROUNDS * TOKENS))} |`,
  )
}
console.log(`p50 ratio stock / live: ${f(p50.get(MODES[1])! / p50.get(MODES[0])!)}×`)
// Something of the browser's or the tap's keeps the event loop alive once all is stopped: end here.
process.exit(0)
