/**
 * Takes the console's screenshots for the README: every page at phone size (375×667) and desktop size
 * (1280×800), against a real server with the simulated Ollama and a little history (a finished task, a chat).
 * Run by hand: `bun plugins/console/screenshots.ts docs/screenshots`. PNGs are reduced to 64 colours when
 * ImageMagick's `convert` is there.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { which } from '../../src/core/which.ts'
import { launchBrowser, openNav, signIn } from '../../test/browser.ts'
import { startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, removeTempDirs, startTestServer, waitFor } from '../../test/helpers.ts'
import { good, planReply } from '../tasks/testing.ts'
import { ensureBuilt } from './build.ts'

const out = resolve(process.argv[2] ?? 'docs/screenshots')
mkdirSync(out, { recursive: true })
await ensureBuilt()
const ollama = await startMockOllama()
ollama.script(({ body }) => {
  const messages = (body?.messages ?? []) as { content?: string }[]
  const text = messages.map((m) => m.content ?? '').join('\n')
  if (!text.includes('email validator')) return undefined
  if (String(messages[0]?.content ?? '').startsWith('You plan'))
    return { content: planReply(['mathutil', 'stats']) }
  return good((/Write the module (\w+)\.ts/.exec(text)?.[1] ?? 'mathutil') as 'mathutil')
})
const server = await startTestServer({ OLLAMA_HOST: ollama.url, CODE_EXECUTION: 'off' })
const task = await server.api('/tasks', {
  method: 'POST',
  json: { prompt: 'Build an email validator', answers: ['Follow RFC 5322'] },
})
const session = await server.api('/api/sessions', {
  method: 'POST',
  json: { title: 'Why the sky is blue', model: 'qwen3' },
})
await waitFor(
  async () => (await server.api(`/tasks/${task.body.task_id}`)).body.status === 'completed',
  30_000,
)
// Enqueued replies come before the script: queue the answer once the task has had its turns.
ollama.enqueue({
  content:
    'Sunlight is scattered by the air: **Rayleigh scattering** grows with the fourth power of frequency, so blue light is scattered about five times more than red.\n\n- At noon you see scattered blue from every direction.\n- At sunset the light crosses more air and the blue is scattered away.\n\n```ts\nconst ratio = (700 / 450) ** 4 // ≈ 5.8\n```',
  thinking: 'The user asks about Rayleigh scattering; keep it short.',
  tokensPerSecond: 40,
})
await server.api(`/api/sessions/${session.body.session_id}/chat`, {
  method: 'POST',
  json: { message: 'Why is the sky blue?', enable_reasoning: true },
})
await waitFor(
  async () =>
    (await server.api(`/api/sessions/${session.body.session_id}/messages`)).body.messages?.at(-1)?.status ===
    'complete',
  20_000,
)
await server.api('/tasks', { method: 'POST', json: { prompt: 'Build a slugify function' } })

const shots: [string, (page: Page) => Promise<void>][] = [
  [
    'tasks',
    async (page) => {
      await openNav(page, 'Tasks')
      await page.getByRole('list', { name: 'Tasks' }).getByText('Build an email validator').waitFor()
    },
  ],
  [
    'task',
    async (page) => {
      await page.goto(`${server.url}/#/tasks/${task.body.task_id}`)
      await page.getByLabel('Code of mathutil.ts').waitFor()
      await page.locator('.hljs-keyword').first().waitFor()
    },
  ],
  [
    'chat',
    async (page) => {
      await page.goto(`${server.url}/#/chat/${session.body.session_id}`)
      await page.getByTestId('metrics').first().waitFor()
    },
  ],
  [
    'desktop',
    async (page) => {
      await openNav(page, 'Desktop')
      await page
        .getByText(/The desktop is|unavailable/)
        .first()
        .waitFor()
      // With Xvfb and x11vnc installed, show it running (black: no window is open on it).
      if (which('Xvfb') && which('x11vnc')) {
        await page.getByRole('button', { name: 'Start desktop', exact: true }).click()
        await page.getByText(/^Connected to/).waitFor({ timeout: 30_000 })
      }
    },
  ],
  [
    'status',
    async (page) => {
      await openNav(page, 'Status')
      await page.getByText('llama3.2').first().waitFor()
    },
  ],
  [
    'admin',
    async (page) => {
      await openNav(page, 'Admin')
      await page.getByRole('button', { name: 'Create key' }).waitFor()
      await page.getByRole('cell', { name: /admin/ }).first().waitFor()
    },
  ],
]

const browser = await launchBrowser()
for (const [size, viewport] of [
  ['phone', { width: 375, height: 667 }],
  ['desktop', { width: 1280, height: 800 }],
] as const) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, isMobile: size === 'phone' })
  const page = await context.newPage()
  await page.goto(`${server.url}/`)
  await page.getByLabel('API key', { exact: true }).waitFor()
  await page.screenshot({ path: join(out, `signin-${size}.png`) })
  await signIn(page, server.url, ADMIN_KEY)
  for (const [name, open] of shots) {
    await open(page)
    await page.waitForTimeout(300)
    await page.screenshot({ path: join(out, `${name}-${size}.png`) })
    if (name === 'desktop') await server.api('/api/vnc/disconnect', { method: 'POST' })
  }
  await context.close()
}
await browser.close()
await server.stop()
await ollama.stop()
removeTempDirs()
const convert = which('convert')
if (convert)
  for (const file of readdirSync(out).filter((name) => name.endsWith('.png')))
    spawnSync(convert, [join(out, file), '-strip', '+dither', '-colors', '64', join(out, file)])
console.log(`screenshots in ${out}`)
process.exit(0)
