/**
 * The console end to end: a real server, the simulated Ollama, and Debian's chromium driving the pages the way a
 * person would. Sign in, start a task from the form and watch it finish, steer and cancel another, chat and watch
 * the answer stream, reload in the middle of an answer, and visit every page without a console error.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import type { Page } from 'playwright-core'
import {
  describeBrowser,
  expectNoProblems,
  openNav,
  screenshot,
  shootOnFailure,
  signIn,
  useBrowser,
} from '../../test/browser.ts'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { startTcpProxy } from '../../test/tcp-proxy.ts'
import { chatMessages } from '../sessions/schema.ts'
import { good, type MODULES, planReply } from '../tasks/testing.ts'
import { ensureBuilt } from './build.ts'

let ollama: MockOllama
let server: TestServer
const SLOW_ANSWER = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' ')

beforeAll(async () => {
  await ensureBuilt()
  ollama = await startMockOllama()
  // Tasks by their goal (a plan, then each module's code); chat gets the mock's default or enqueued answers.
  ollama.script(({ body }) => {
    const messages = (body?.messages ?? []) as { content?: string }[]
    const text = messages.map((m) => m.content ?? '').join('\n')
    const planning = String(messages[0]?.content ?? '').startsWith('You plan')
    const module = /Write the module (\w+)\.ts/.exec(text)?.[1] as keyof typeof MODULES | undefined
    if (text.includes('Build a tiny math library'))
      return planning ? { content: planReply(['mathutil', 'stats']) } : good(module ?? 'mathutil')
    // Plans, then never finishes writing its module: there is time to steer it and to cancel it.
    if (text.includes('Build a slow parser'))
      return planning ? { content: planReply(['mathutil']) } : { hang: true, content: '{"code": "' }
    return undefined
  })
  server = await startTestServer({ OLLAMA_HOST: ollama.url, CODE_EXECUTION: 'off' })
}, 120_000)

afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
}, 30_000)

const progressOf = (page: Page, name: string) =>
  page.getByRole('progressbar', { name, exact: true }).first().getAttribute('value')

/**
 * Every text each answer showed, as the page painted it (a MutationObserver per page load, across reloads), and
 * the chat sockets' frames by type: the console asks for live tokens, so their deltas come tentative first.
 */
async function watchAnswers(page: Page, onTentative?: () => void) {
  const shown = new Map<string, string[]>()
  const sockets: string[] = []
  // dropped: tentative frames neither acknowledged nor retracted when their socket closed.
  const frames = { tentative: 0, ack: 0, retract: 0, dropped: 0 }
  await page.exposeFunction('__answerShown', (id: string, text: string) => {
    const list = shown.get(id) ?? []
    list.push(text)
    shown.set(id, list)
  })
  await page.addInitScript(() => {
    const previous = new Map<string, string>()
    new MutationObserver(() => {
      for (const answer of Array.from(document.querySelectorAll('article[data-role=assistant]'))) {
        const id = answer.getAttribute('data-message-id') ?? ''
        const text = answer.querySelector('.md')?.textContent?.trim() ?? ''
        if (previous.get(id) === text) continue
        previous.set(id, text)
        ;(window as any).__answerShown(id, text)
      }
    }).observe(document, { subtree: true, childList: true, characterData: true })
  })
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/ws/chat/')) return
    sockets.push(ws.url())
    const open = new Set<number>()
    ws.on('framereceived', ({ payload }) => {
      const frame = JSON.parse(String(payload))
      if (typeof frame.tentative === 'number') {
        frames.tentative++
        open.add(frame.tentative)
        onTentative?.()
      } else if (frame.type === 'ack' || frame.type === 'retract') {
        frames[frame.type === 'ack' ? 'ack' : 'retract']++
        for (const id of frame.tentative) open.delete(id)
      }
    })
    ws.on('close', () => (frames.dropped += open.size))
  })
  /** The texts one answer showed, each a prefix of the final one (no word shown twice, none in a wrong place). */
  const expectGrowing = (id: string, final: string) => {
    const texts = shown.get(id) ?? []
    expect(texts.length).toBeGreaterThan(3)
    for (const text of texts) expect(final.startsWith(text)).toBe(true)
  }
  return { shown, sockets, frames, expectGrowing }
}

describeBrowser('the console, end to end', () => {
  const tab = useBrowser(() => server.url)

  test('sign in, start a task from the form, watch it reach 100% and its modules appear', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'e2e-task', async () => {
      await page.goto(`${server.url}/`)
      await page.getByLabel('API key', { exact: true }).waitFor()
      await screenshot(page, 'signin')
      await signIn(page, server.url, ADMIN_KEY)
      await page.getByRole('status').filter({ hasText: 'Signed in as admin (admin)' }).waitFor()
      await openNav(page, 'Tasks')
      await page.getByLabel('Prompt', { exact: true }).fill('Build a tiny math library')
      await page.getByRole('button', { name: 'Add answer' }).click()
      await page.getByLabel('Clarifying answer 1').fill('Use plain numbers')
      await page.getByRole('button', { name: 'Add answer' }).click()
      await page.getByLabel('Clarifying answer 2').fill('to be removed')
      await page.getByRole('button', { name: 'Remove answer 2' }).click()
      expect(await page.getByLabel('Clarifying answer 2').count()).toBe(0)
      await page.getByLabel('Max iterations').fill('2')
      await page.getByRole('button', { name: 'Start task', exact: true }).click()
      // The new task is at the top of the list at once; its page follows it live to the end.
      await page
        .getByRole('list', { name: 'Tasks' })
        .getByRole('link', { name: 'Build a tiny math library' })
        .click()
      await page.getByRole('heading', { level: 1, name: 'Build a tiny math library' }).waitFor()
      await waitFor(async () => (await progressOf(page, 'Task progress')) === '100', 30_000, 'progress 100%')
      await page.getByRole('region', { name: 'Timeline' }).getByText('TASK_COMPLETE').first().waitFor()
      const code = page.getByLabel('Code of mathutil.ts', { exact: true })
      await code.waitFor()
      expect(await code.textContent()).toContain('export const add = (a: number, b: number): number => a + b')
      await page.getByLabel('Code of stats.ts', { exact: true }).waitFor()
      // The task as the server has it: the answers from the form went with it.
      const tasks = (await server.api('/tasks')).body.tasks
      expect(tasks[0].prompt).toBe('Build a tiny math library')
      expect(tasks[0].max_iterations).toBe(2)
      await screenshot(page, 'task')
    })
    expectNoProblems(problems)
  }, 90_000)

  test('a task started with curl appears in the list live; another is steered, then cancelled', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'e2e-intervene', async () => {
      await signIn(page, server.url, ADMIN_KEY)
      await openNav(page, 'Tasks')
      await page.getByRole('list', { name: 'Tasks' }).waitFor()
      const created = await server.api('/tasks', { method: 'POST', json: { prompt: 'Build a slow parser' } })
      expect(created.status).toBe(201)
      const taskId = created.body.task_id as string
      const link = page.getByRole('link', { name: 'Build a slow parser' })
      await link.waitFor({ timeout: 10_000 })
      await screenshot(page, 'tasks')
      await link.click()
      await page.getByRole('heading', { level: 1, name: 'Build a slow parser' }).waitFor()
      await page
        .getByRole('region', { name: 'Timeline' })
        .getByText('PLANNING_COMPLETE')
        .first()
        .waitFor({ timeout: 20_000 })
      await page.getByLabel('Guidance', { exact: true }).fill('Accept trailing commas')
      await page.getByRole('button', { name: 'Send guidance' }).click()
      await page
        .getByRole('region', { name: 'Timeline' })
        .getByText('INTERVENTION_RECEIVED')
        .first()
        .waitFor()
      await page.getByText('Accept trailing commas').first().waitFor()
      await page.getByRole('button', { name: 'Cancel task' }).click()
      await page
        .getByRole('region', { name: 'Timeline' })
        .getByText('TASK_CANCELLED')
        .first()
        .waitFor({ timeout: 20_000 })
      await waitFor(
        async () => (await server.api(`/tasks/${taskId}`)).body.status === 'cancelled',
        10_000,
        'cancelled',
      )
      // Guidance the task never used is said to have come too late.
      await page.getByRole('note').filter({ hasText: 'too late' }).first().waitFor()
      // The note says why, from the INTERVENTION_NOT_APPLIED event's reason, next to the guidance itself.
      await page
        .getByRole('note')
        .filter({ hasText: 'Accept trailing commas' })
        .filter({ hasText: 'The task was cancelled before another model call could use it.' })
        .waitFor({ timeout: 5_000 })
      await page.getByRole('button', { name: 'Delete task' }).click()
      await page.getByRole('button', { name: 'Confirm delete' }).click()
      await page.getByRole('button', { name: 'Start task', exact: true }).waitFor()
      await page
        .getByRole('list', { name: 'Tasks' })
        .getByText('Build a slow parser')
        .waitFor({ state: 'detached' })
      expect((await server.api(`/tasks/${taskId}`)).status).toBe(404)
    })
    expectNoProblems(problems)
  }, 90_000)

  test('chat: the answer streams in; a reload mid-answer loses and doubles nothing', async () => {
    const { page, problems } = tab()
    ollama.enqueue({ content: SLOW_ANSWER, tokensPerSecond: 15 })
    const answers = await watchAnswers(page)
    await shootOnFailure(page, 'e2e-chat', async () => {
      await signIn(page, server.url, ADMIN_KEY)
      await openNav(page, 'Chat')
      await page.getByRole('button', { name: 'New session', exact: true }).click()
      await page.getByLabel('Session name', { exact: true }).fill('Sky questions')
      await page.getByRole('button', { name: 'Create session' }).click()
      await page.getByRole('heading', { level: 1, name: 'Sky questions' }).waitFor()
      await page.getByLabel('Message', { exact: true }).fill('Why is the sky blue?')
      await page.getByRole('button', { name: 'Send', exact: true }).click()
      const answer = page.locator('article[data-role=assistant]').last()
      // Streaming: part of the answer shows while the rest is still coming.
      await answer.getByText('word5', { exact: false }).waitFor({ timeout: 20_000 })
      expect(await answer.textContent()).not.toContain('word79')
      await page.getByRole('button', { name: 'Stop' }).waitFor()
      await page.reload()
      await page.getByRole('heading', { level: 1, name: 'Sky questions' }).waitFor()
      const again = page.locator('article[data-role=assistant]').last()
      await again.getByTestId('metrics').waitFor({ timeout: 30_000 })
      const text = (await again.locator('.md').textContent())!.trim()
      expect(text).toBe(SLOW_ANSWER)
      expect(await again.getByTestId('metrics').textContent()).toMatch(/tokens\/s · first token \d+ ms/)
      expect(await page.locator('article[data-role=user]').count()).toBe(1)
      expect(await page.locator('article[data-role=assistant]').count()).toBe(1)
      // Live tokens: deltas shown before their commit, then acknowledged; every text shown on the way (before
      // and after the reload) was the start of the final answer.
      expect(answers.sockets.every((url) => url.includes('tentative=1'))).toBe(true)
      expect(answers.frames.tentative).toBeGreaterThan(10)
      expect(answers.frames.ack).toBeGreaterThan(0)
      answers.expectGrowing((await again.getAttribute('data-message-id'))!, SLOW_ANSWER)
      // A second question, answered at once by the default reply.
      await page.getByLabel('Message', { exact: true }).fill('And at sunset?')
      await page.getByRole('button', { name: 'Send', exact: true }).click()
      await page.getByText('Simulated answer to: And at sunset?').waitFor({ timeout: 20_000 })
      await screenshot(page, 'chat')
    })
    expectNoProblems(problems)
  }, 90_000)

  test('chat with live tokens: before its response the answer shown is exactly the answer, each word once', async () => {
    const { page, problems } = tab()
    const words = Array.from({ length: 60 }, (_, i) => `live${i}`).join(' ')
    // The whole answer streams, then the model holds on: no `response` yet, so what shows came from the deltas.
    ollama.enqueue({ content: words, tokensPerSecond: 30, hang: true })
    const answers = await watchAnswers(page)
    const created = await server.api('/api/sessions', { method: 'POST', json: { title: 'Live tokens' } })
    await shootOnFailure(page, 'e2e-chat-live', async () => {
      await signIn(page, server.url, ADMIN_KEY)
      await page.goto(`${server.url}/#/chat/${created.body.session_id}`)
      await page.getByRole('heading', { level: 1, name: 'Live tokens' }).waitFor()
      await page.getByLabel('Message', { exact: true }).fill('Count for me')
      await page.getByRole('button', { name: 'Send', exact: true }).click()
      const answer = page.locator('article[data-role=assistant]').last()
      await answer.getByText('live20', { exact: false }).waitFor({ timeout: 20_000 })
      await screenshot(page, 'chat-live')
      const shown = async () => (await answer.locator('.md').textContent())?.trim()
      await waitFor(async () => (await shown()) === words, 20_000, 'the whole answer before its response')
      expect(await answer.getByTestId('metrics').count()).toBe(0)
      expect(await answer.getByText('Stopped before the end.').count()).toBe(0)
      expect(answers.sockets.length).toBeGreaterThan(0)
      expect(answers.sockets.every((url) => url.includes('tentative=1'))).toBe(true)
      expect(answers.frames.tentative).toBeGreaterThan(10)
      answers.expectGrowing((await answer.getAttribute('data-message-id'))!, words)
      // Stopped: the committed answer is the text shown, nothing added or taken away.
      await page.getByRole('button', { name: 'Stop', exact: true }).click()
      await answer.getByText('Stopped before the end.').waitFor({ timeout: 10_000 })
      expect(await shown()).toBe(words)
      expect(answers.frames.ack).toBeGreaterThan(0)
    })
    expectNoProblems(problems)
  }, 60_000)

  test('a long conversation opens at its end and pages back to its first message', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'e2e-chat-earlier', async () => {
      const created = await server.api('/api/sessions', { method: 'POST', json: { title: 'A long talk' } })
      const sessionId = created.body.session_id as string
      // 450 stored messages: three pages of 200 from the newest (250–449, 50–249, 0–49).
      const TOTAL = 450
      await server.running.gantry.db.insert(chatMessages).values(
        Array.from({ length: TOTAL }, (_, i) => ({
          id: `long-${i}`,
          sessionId,
          role: i % 2 ? ('assistant' as const) : ('user' as const),
          content: `Line ${i} of the long talk`,
        })),
      )
      const newest = await server.api(`/api/sessions/${sessionId}/messages?order=desc&limit=2`)
      expect(newest.body.messages.map((m: { message_id: string }) => m.message_id)).toEqual([
        'long-449',
        'long-448',
      ])
      const sideways = await server.api(`/api/sessions/${sessionId}/messages?order=sideways`)
      expect([sideways.status, sideways.body.error]).toEqual([422, 'validation_failed'])
      const shown = page.locator('[data-message-id^="long-"]')
      const ids = () => shown.evaluateAll((all) => all.map((e) => e.getAttribute('data-message-id')))
      const earlier = page.getByRole('button', { name: 'Load earlier messages', exact: true })
      await signIn(page, server.url, ADMIN_KEY)
      await page.goto(`${server.url}/#/chat/${sessionId}`)
      await page.locator('[data-message-id="long-449"]').waitFor()
      expect(await shown.count()).toBe(200)
      expect((await ids())[0]).toBe('long-250')
      // At the top of what is shown, the next page goes above without moving the reader's place.
      const conversation = page.getByRole('region', { name: 'Conversation' })
      await conversation.evaluate((e) => (e.scrollTop = 0))
      await screenshot(page, 'chat-load-earlier')
      const topOf = (id: string) =>
        page.locator(`[data-message-id="${id}"]`).evaluate((e) => e.getBoundingClientRect().top)
      const before = await topOf('long-250')
      await earlier.click()
      await page.locator('[data-message-id="long-50"]').waitFor()
      await waitFor(
        async () => Math.abs((await topOf('long-250')) - before) < 2,
        5_000,
        'the message read before to stay in its place',
      )
      await screenshot(page, 'chat-earlier')
      await earlier.click()
      await page.locator('[data-message-id="long-0"]').waitFor()
      expect(await earlier.count()).toBe(0)
      const all = await ids()
      expect(all).toEqual(Array.from({ length: TOTAL }, (_, i) => `long-${i}`))
    })
    expectNoProblems(problems)
  }, 60_000)

  test('a session that ends brings back the sign-in form, and the page keeps what was typed', async () => {
    const { page, problems, context } = tab()
    await shootOnFailure(page, 'e2e-expired', async () => {
      // Signed out, nothing but the sign-in form: no navigation to pages it cannot open, no sign-out.
      const signedInControls = async () =>
        (await page.getByRole('navigation', { name: 'Main' }).count()) +
        (await page.getByRole('link', { name: 'Tasks', exact: true }).count()) +
        (await page.getByRole('button', { name: 'Sign out' }).count()) +
        (await page.getByText('Signed in as').count())
      await page.goto(`${server.url}/`)
      await page.getByLabel('API key', { exact: true }).waitFor()
      expect(await signedInControls()).toBe(0)
      await signIn(page, server.url, ADMIN_KEY)
      await page.getByRole('navigation', { name: 'Main' }).waitFor()
      expect(await page.getByRole('link', { name: 'Tasks', exact: true }).getAttribute('aria-current')).toBe(
        'page',
      )
      await openNav(page, 'Tasks')
      await page.getByLabel('Prompt', { exact: true }).fill('Build a queue, half typed')
      // The session ends elsewhere (another tab signed out, an admin revoked it): the cookie is gone.
      await context.clearCookies()
      await page.getByRole('button', { name: 'Start task', exact: true }).click()
      await page.getByLabel('API key', { exact: true }).waitFor()
      expect(await signedInControls()).toBe(0)
      await signIn(page, server.url, ADMIN_KEY)
      expect(await page.getByLabel('Prompt', { exact: true }).inputValue()).toBe('Build a queue, half typed')
    })
    expectNoProblems(problems, [/status of 401 \(Unauthorized\)/])
  }, 60_000)

  const desktopInstalled = Boolean(Bun.which('Xvfb') && Bun.which('x11vnc'))
  test.skipIf(!desktopInstalled)(
    'the desktop starts, noVNC draws it under the CSP, and stops',
    async () => {
      const { page, problems } = tab()
      await shootOnFailure(page, 'e2e-desktop', async () => {
        await signIn(page, server.url, ADMIN_KEY)
        await openNav(page, 'Desktop')
        await page.getByRole('button', { name: 'Start desktop', exact: true }).click()
        await page.getByText(/^Connected to :\d+/).waitFor({ timeout: 30_000 })
        const canvas = page.getByRole('region', { name: 'Desktop screen' }).locator('canvas')
        // Drawn: the framebuffer has arrived and the canvas holds the desktop's size.
        await waitFor(
          async () => (await canvas.evaluate((c: HTMLCanvasElement) => c.width)) >= 320,
          15_000,
          'the canvas to get the desktop',
        )
        await page.getByRole('checkbox', { name: 'View only' }).check()
        await screenshot(page, 'desktop-running')
        await page.getByRole('button', { name: 'Stop desktop', exact: true }).click()
        await page.getByRole('button', { name: 'Start desktop', exact: true }).waitFor({ timeout: 15_000 })
        expect((await server.api('/api/vnc/status')).body.state).toBe('stopped')
      })
      expectNoProblems(problems)
    },
    90_000,
  )

  test('every page opens without a console error', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'e2e-pages', async () => {
      await signIn(page, server.url, ADMIN_KEY)
      await openNav(page, 'Status')
      await page.getByRole('heading', { name: 'Plugins' }).waitFor()
      await page.getByText('console').first().waitFor()
      await screenshot(page, 'status')
      await openNav(page, 'Desktop')
      await page.getByRole('region', { name: 'Desktop screen' }).waitFor()
      await page
        .getByText(/The desktop is|unavailable/)
        .first()
        .waitFor()
      await screenshot(page, 'desktop')
      await openNav(page, 'Admin')
      await page.getByRole('heading', { name: 'API keys' }).waitFor()
      await page.getByLabel('Key user').fill('carol')
      await page.getByRole('button', { name: 'Create key' }).click()
      const key = await page.getByLabel('New API key').textContent()
      expect(key).toMatch(/^gk_/)
      await page
        .getByRole('region', { name: 'Server log' })
        .getByText('POST /api/keys')
        .first()
        .waitFor({ timeout: 10_000 })
        .catch(() => {})
      await screenshot(page, 'admin')
      await openNav(page, 'Chat')
      await page.getByRole('link', { name: 'Agents' }).click()
      await page.getByLabel('Agent name').fill('poet')
      await page.getByRole('button', { name: 'Create agent' }).click()
      await page.getByRole('button', { name: 'Delete agent poet' }).click()
      await page.getByRole('button', { name: 'Delete agent poet' }).waitFor({ state: 'detached' })
      await page.getByRole('button', { name: 'Sign out' }).click()
      await page.getByLabel('API key', { exact: true }).waitFor()
    })
    expectNoProblems(problems)
  }, 90_000)
})

describeBrowser('the console across a network drop', () => {
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>
  beforeAll(async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: server.running.server.port })
  })
  afterAll(() => proxy?.stop())
  const origin = () => `http://127.0.0.1:${proxy.port}`
  const tab = useBrowser(origin)

  test('the offline banner shows while the network is down; the answer resumes from its last seq', async () => {
    const { page, problems } = tab()
    const words = Array.from({ length: 60 }, (_, i) => `drop${i}`).join(' ')
    const created = await server.api('/api/sessions', { method: 'POST', json: { title: 'Through a tunnel' } })
    // The network goes down just after a tentative frame came: its ack cannot follow it.
    let cutOnNext = false
    const answers = await watchAnswers(page, () => {
      if (!cutOnNext) return
      cutOnNext = false
      proxy.cut()
    })
    await shootOnFailure(page, 'e2e-drop', async () => {
      await signIn(page, origin(), ADMIN_KEY)
      await page.goto(`${origin()}/#/chat/${created.body.session_id}`)
      await page.getByRole('heading', { level: 1, name: 'Through a tunnel' }).waitFor()
      ollama.enqueue({ content: words, tokensPerSecond: 12 })
      await page.getByLabel('Message', { exact: true }).fill('Tell me slowly')
      await page.getByRole('button', { name: 'Send', exact: true }).click()
      const answer = page.locator('article[data-role=assistant]').last()
      await answer.getByText('drop3', { exact: false }).waitFor({ timeout: 20_000 })
      cutOnNext = true
      await page.getByRole('alert').filter({ hasText: 'Offline: reconnecting…' }).waitFor({ timeout: 10_000 })
      await Bun.sleep(1500)
      proxy.restore()
      await answer.getByTestId('metrics').waitFor({ timeout: 30_000 })
      expect((await answer.locator('.md').textContent())!.trim()).toBe(words)
      // Two sockets with live tokens; what the first showed unacknowledged went with it (the console dropped
      // it), and the second resumed by seq: every text shown on the way was the start of the answer.
      expect(answers.sockets.length).toBeGreaterThan(1)
      expect(answers.sockets.every((url) => url.includes('tentative=1'))).toBe(true)
      expect(answers.sockets.slice(1).every((url) => /[?&]since=\d+/.test(url))).toBe(true)
      answers.expectGrowing((await answer.getAttribute('data-message-id'))!, words)
      expect(answers.frames.dropped).toBeGreaterThan(0)
      await page
        .getByRole('alert')
        .filter({ hasText: 'Offline' })
        .waitFor({ state: 'detached', timeout: 15_000 })
    })
    // What the browser says while the server cannot be reached is expected; nothing else is.
    expectNoProblems(problems, [/WebSocket connection to .* failed/, /net::ERR_/, /Failed to load resource/])
  }, 90_000)
})
