/**
 * The console's pages as a person reaches them (through its navigation, by accessible name), for the tests that
 * visit every page: accessibility, the phone-size screen, no console error. A world to visit them in: a server
 * with the simulated Ollama, a finished task with modules and a chat session with an answer.
 */
import { expect } from 'bun:test'
import type { Locator, Page } from 'playwright-core'
import { openNav, signIn } from './browser.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from './helpers.ts'

export const TASK_PROMPT = 'Build an email validator'
export const SESSION_TITLE = 'Why the sky is blue'

export interface ConsoleWorld {
  server: TestServer
  ollama: MockOllama
  taskId: string
  sessionId: string
  stop(): Promise<void>
}

/** A server with one finished task (modules, code and tests) and one chat session with a finished answer. */
export async function startConsoleWorld(): Promise<ConsoleWorld> {
  const ollama = await startMockOllama()
  const server = await startTestServer({ OLLAMA_HOST: ollama.url, CODE_EXECUTION: 'off' })
  const task = await server.api('/tasks', { method: 'POST', json: { prompt: TASK_PROMPT } })
  if (task.status >= 300) throw new Error(`task: ${task.status} ${JSON.stringify(task.body)}`)
  const session = await server.api('/api/sessions', { method: 'POST', json: { title: SESSION_TITLE } })
  if (session.status !== 201) throw new Error(`session: ${session.status} ${JSON.stringify(session.body)}`)
  const sessionId = session.body.session_id as string
  await server.api(`/api/sessions/${sessionId}/chat`, {
    method: 'POST',
    json: { message: 'Why is the sky blue?' },
  })
  await waitFor(
    async () => (await server.api(`/tasks/${task.body.task_id}`)).body.status === 'completed',
    30_000,
    'the seeded task to complete',
  )
  await waitFor(
    async () =>
      (await server.api(`/api/sessions/${sessionId}/messages`)).body.messages?.at(-1)?.status === 'complete',
    20_000,
    'the seeded answer',
  )
  return {
    server,
    ollama,
    taskId: task.body.task_id,
    sessionId,
    async stop() {
      await server.stop()
      await ollama.stop()
    },
  }
}

export interface ConsolePage {
  name: string
  /** Brings the page up from a signed-in console (or, for sign-in, a signed-out one). */
  open(page: Page, world: ConsoleWorld): Promise<void>
  /** The page's main controls: each must have an accessible name and be reachable with the keyboard. */
  controls(page: Page): Locator[]
}

const link = (page: Page, name: string) => page.getByRole('link', { name, exact: true }).first()
const navLinks = (page: Page) => ['Tasks', 'Chat', 'Desktop', 'Status'].map((name) => link(page, name))

/** Every page of the console, signed in as the admin except the first. */
export const CONSOLE_PAGES: ConsolePage[] = [
  {
    name: 'sign-in',
    async open(page, { server }) {
      await page.goto(`${server.url}/`)
      await page.getByLabel('API key', { exact: true }).waitFor()
    },
    controls: (page) => [
      page.getByLabel('API key', { exact: true }),
      page.getByRole('button', { name: 'Sign in', exact: true }),
    ],
  },
  {
    name: 'tasks',
    async open(page) {
      await openNav(page, 'Tasks')
      await page.getByLabel('Prompt', { exact: true }).waitFor()
      await page.getByRole('list', { name: 'Tasks' }).getByText(TASK_PROMPT).waitFor()
    },
    controls: (page) => [
      ...navLinks(page),
      page.getByLabel('Prompt', { exact: true }),
      page.getByRole('button', { name: 'Start task', exact: true }),
    ],
  },
  {
    name: 'task',
    async open(page) {
      await openNav(page, 'Tasks')
      await page.getByRole('list', { name: 'Tasks' }).getByText(TASK_PROMPT).click()
      await page.getByRole('article', { name: /Module validator/ }).waitFor()
      await page.getByRole('log').first().waitFor()
    },
    // The task has finished: guidance and cancel are disabled (so not focusable); delete is what is left.
    controls: (page) => [...navLinks(page), page.getByRole('button', { name: 'Delete task', exact: true })],
  },
  {
    name: 'chat',
    async open(page) {
      await openNav(page, 'Chat')
      await page.getByRole('list', { name: 'Sessions' }).getByText(SESSION_TITLE).waitFor()
    },
    controls: (page) => [...navLinks(page), page.getByRole('button', { name: 'New session', exact: true })],
  },
  {
    name: 'conversation',
    async open(page) {
      await openNav(page, 'Chat')
      await page.getByRole('list', { name: 'Sessions' }).getByText(SESSION_TITLE).click()
      await page.getByText('Simulated answer to: Why is the sky blue?').first().waitFor()
    },
    controls: (page) => [
      ...navLinks(page),
      page.getByLabel('Message', { exact: true }),
      page.getByRole('button', { name: 'Send', exact: true }),
    ],
  },
  {
    name: 'desktop',
    async open(page) {
      await openNav(page, 'Desktop')
      await page.getByRole('button', { name: 'Start desktop', exact: true }).waitFor()
    },
    controls: (page) => [
      ...navLinks(page),
      page.getByRole('button', { name: 'Start desktop', exact: true }),
      page.getByRole('checkbox', { name: 'View only' }),
    ],
  },
  {
    name: 'status',
    async open(page) {
      await openNav(page, 'Status')
      await page.getByRole('region', { name: 'Health' }).waitFor()
      await page.getByRole('region', { name: 'Models' }).waitFor()
    },
    controls: (page) => [...navLinks(page)],
  },
  {
    name: 'admin: server log and API keys',
    async open(page) {
      await openNav(page, 'Admin')
      await page.getByRole('combobox', { name: 'Log level' }).waitFor()
      await page.getByRole('button', { name: 'Create key' }).waitFor()
    },
    controls: (page) => [
      ...navLinks(page),
      page.getByRole('combobox', { name: 'Log level' }),
      page.getByRole('textbox', { name: 'Key user' }),
      page.getByRole('button', { name: 'Create key', exact: true }),
    ],
  },
]

/** Opens `which` the way a person would: signed out for sign-in, else signed in as the admin first. */
export async function visit(page: Page, world: ConsoleWorld, which: ConsolePage): Promise<void> {
  if (which.name !== 'sign-in') {
    await page.goto(`${world.server.url}/`)
    await signIn(page, world.server.url, ADMIN_KEY)
  }
  await which.open(page, world)
  // Let lazy parts (the highlighter, the live streams) arrive before anything is judged.
  await page.waitForLoadState('networkidle')
}

/** Asserts that every control in `controls` is reached by pressing Tab from the top of the page. */
export async function expectKeyboardReachable(page: Page, controls: Locator[]): Promise<void> {
  const names: string[] = []
  for (const [i, control] of controls.entries()) {
    await control.waitFor()
    names.push(
      await control.evaluate((e, i) => {
        e.setAttribute('data-keyboard-target', String(i))
        return e.textContent?.trim() || e.getAttribute('aria-label') || e.id || e.tagName
      }, i),
    )
  }
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
  const reached = new Set<string>()
  for (let press = 0; press < 120 && reached.size < controls.length; press++) {
    await page.keyboard.press('Tab')
    const target = await page.evaluate(() => document.activeElement?.getAttribute('data-keyboard-target'))
    if (target) reached.add(target)
  }
  const missed = names.filter((_, i) => !reached.has(String(i)))
  expect(missed).toEqual([])
}
