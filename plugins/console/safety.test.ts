/**
 * Model output is untrusted: answers and module code carrying <script>, an <img onerror>, javascript: links and
 * a 1 MB unbroken line render in the console as inert text. The simulated Ollama writes them; a real browser
 * shows them; nothing they carry may run (a window flag stays unset, no dialog opens) and the page stays usable.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import type { Page } from 'playwright-core'
import {
  describeBrowser,
  expectNoProblems,
  horizontalOverflow,
  openNav,
  screenshot,
  shootOnFailure,
  signIn,
  useBrowser,
} from '../../test/browser.ts'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

// Each payload would set window.__pwned (or open a dialog) if the page ever ran it.
const HOSTILE = [
  '<script>window.__pwned = "script"; alert("script")</script>',
  "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
  "[a markdown link](javascript:window.__pwned='md-link')",
  '<a href="javascript:window.__pwned=\'a-link\'">an html link</a>',
  '<svg onload="window.__pwned = \'svg\'"></svg>',
  '<iframe src="javascript:parent.__pwned=\'iframe\'"></iframe>',
]
const ANSWER = [
  'HOSTILE-ANSWER starts.',
  ...HOSTILE,
  'The same, as code:',
  '```html',
  ...HOSTILE,
  '```',
  'HOSTILE-ANSWER ends.',
].join('\n\n')
const LONG_LINE = `LONG-LINE-${'A'.repeat(1024 * 1024)}`
const MODULE_CODE = [
  `// HOSTILE-MODULE ${HOSTILE[0]} ${HOSTILE[1]}`,
  `export const markup = ${JSON.stringify(HOSTILE.join(' '))}`,
  `export const long = '${'B'.repeat(1024 * 1024)}'`,
  'export function answer(): number {',
  '  return 42',
  '}',
  '',
].join('\n')

let ollama: MockOllama
let server: TestServer
beforeAll(async () => {
  ollama = await startMockOllama()
  ollama.script(({ body }) => {
    const last = String(body.messages?.at(-1)?.content ?? '')
    if (last.startsWith('hostile')) return { content: ANSWER }
    if (last.startsWith('long line')) return { content: `${LONG_LINE}\n\nLONG-LINE-END` }
    // A task's module request (its schema asks for code and tests): code full of markup, one 1 MB line.
    if (body.format?.properties?.code) {
      const prompt = body.messages.map((m: { content: string }) => m.content).join('\n')
      const name = /Write the module ([a-z][a-z0-9_]*)\.ts/.exec(prompt)?.[1] ?? 'program'
      const tests = `import { expect, test } from 'bun:test'\nimport { answer } from './${name}.ts'\ntest('answers', () => expect(answer()).toBe(42))\n`
      return { content: JSON.stringify({ code: MODULE_CODE, tests }) }
    }
    return undefined
  })
  server = await startTestServer({ OLLAMA_HOST: ollama.url, CODE_EXECUTION: 'off' })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
}, 30_000)

/** Whatever the payloads would have done if they ran. */
const pwned = (page: Page) => page.evaluate(() => (window as any).__pwned ?? null)

/** Elements that could run or navigate to script inside the given part of the page. */
const liveMarkup = (page: Page) =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll('main *, [role=main] *'))
      .filter(
        (e) =>
          ['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(e.tagName) ||
          Array.from(e.attributes).some((a) => a.name.startsWith('on') || /^\s*javascript:/i.test(a.value)),
      )
      .map((e) => e.outerHTML.slice(0, 120)),
  )

/** Opens the chat page on a fresh session and sends `message`. */
async function ask(page: Page, title: string, message: string) {
  const created = await server.api('/api/sessions', { method: 'POST', json: { title } })
  expect(created.status).toBe(201)
  await page.goto(`${server.url}/`)
  await signIn(page, server.url, ADMIN_KEY)
  await openNav(page, 'Chat')
  await page.getByRole('list', { name: 'Sessions' }).getByText(title).click()
  await page.getByLabel('Message', { exact: true }).fill(message)
  await page.getByRole('button', { name: 'Send', exact: true }).click()
}

describeBrowser('hostile model output in the console', () => {
  const tab = useBrowser(() => server.url)

  test('an answer with script, onerror, javascript: links, svg and iframe shows as text; nothing runs', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'safety-answer', async () => {
      await ask(page, 'Hostile answer', 'hostile, please')
      await page.getByText('HOSTILE-ANSWER ends.').waitFor({ timeout: 20_000 })
      // The fenced copy is code: every payload is on screen, character for character.
      for (const payload of HOSTILE)
        await expect(page.getByText(payload).first().isVisible()).resolves.toBe(true)
      // Give an onerror (the image x fails to load) time to fire if it was going to.
      await page.waitForLoadState('networkidle')
      expect(await pwned(page)).toBeNull()
      expect(await liveMarkup(page)).toEqual([])
      // Clicking the links must not run them either.
      for (const name of ['a markdown link', 'an html link']) {
        const link = page.getByText(name, { exact: true }).first()
        if (await link.isVisible()) await link.click({ timeout: 2000 }).catch(() => {})
      }
      expect(await pwned(page)).toBeNull()
      await screenshot(page, 'safety-answer')
    })
    expectNoProblems(problems)
  }, 60_000)

  test('a 1 MB unbroken line shows, wraps or scrolls in its own box, and the page stays usable', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'safety-long-line', async () => {
      await ask(page, 'Long line', 'long line, please')
      await page.getByText('LONG-LINE-END').waitFor({ timeout: 30_000 })
      expect(await page.evaluate(() => document.body.textContent?.includes('LONG-LINE-AAAA'))).toBe(true)
      expect(await horizontalOverflow(page)).toBe(0)
      // Still usable: the field takes text, another answer arrives.
      await page.getByLabel('Message', { exact: true }).fill('hello again')
      await page.getByRole('button', { name: 'Send', exact: true }).click()
      await page.getByText('Simulated answer to: hello again').first().waitFor({ timeout: 20_000 })
      expect(await pwned(page)).toBeNull()
      await screenshot(page, 'safety-long-line')
    })
    expectNoProblems(problems)
  }, 90_000)

  test('module code with markup and a 1 MB line shows as code on the task page; nothing runs', async () => {
    const { page, problems } = tab()
    const prompt = 'Build a hostile markup module'
    const created = await server.api('/tasks', { method: 'POST', json: { prompt } })
    expect(created.status).toBeLessThan(300)
    const taskId = created.body.task_id as string
    await waitFor(
      async () => ['completed', 'failed'].includes((await server.api(`/tasks/${taskId}`)).body.status),
      30_000,
      'the task to finish',
    )
    await shootOnFailure(page, 'safety-module', async () => {
      await page.goto(`${server.url}/`)
      await signIn(page, server.url, ADMIN_KEY)
      await openNav(page, 'Tasks')
      await page.getByRole('list', { name: 'Tasks' }).getByText(prompt).click()
      await page
        .getByText(/HOSTILE-MODULE/)
        .first()
        .waitFor({ timeout: 20_000 })
      expect(await page.getByText(HOSTILE[0]!).first().isVisible()).toBe(true)
      await page.waitForLoadState('networkidle')
      expect(await pwned(page)).toBeNull()
      expect(await liveMarkup(page)).toEqual([])
      expect(await horizontalOverflow(page)).toBe(0)
      await page
        .getByText(/HOSTILE-MODULE/)
        .first()
        .scrollIntoViewIfNeeded()
      await screenshot(page, 'safety-module')
    })
    expectNoProblems(problems)
  }, 90_000)
})
