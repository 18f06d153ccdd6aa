/**
 * The shared browser harness: Debian's chromium driven by playwright-core, one browser per test file, a fresh
 * context (cookies, storage) per test, and a record of everything a page got wrong (console errors, uncaught
 * exceptions, failed requests, requests leaving the server's origin) so tests can assert there was none.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect } from 'bun:test'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  chromium,
  type Page,
} from 'playwright-core'

/** Where Debian's `chromium` package puts the browser (`CHROMIUM_PATH` overrides it). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
]
const IN_CI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0'

/**
 * Why browser tests cannot run here, or null when they can. In CI a missing browser is not a reason to skip:
 * the tests run and fail, saying what to install.
 */
export const browserSkipReason: string | null =
  existsSync(CHROMIUM_PATH) || IN_CI
    ? null
    : `no browser at ${CHROMIUM_PATH} (install Debian's chromium package or set CHROMIUM_PATH)`

/**
 * `describe` for tests that need the browser: skipped, with the reason in its name, when there is none and CI
 * is not set.
 */
export function describeBrowser(name: string, fn: () => void): void {
  const label = browserSkipReason ? `${name} [skipped: ${browserSkipReason}]` : name
  describe.skipIf(browserSkipReason !== null)(label, fn)
}

/** Starts headless chromium; throws, naming the missing package, when the browser is absent. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH))
    throw new Error(`no browser at ${CHROMIUM_PATH}: .ci/run must apt-get install chromium`)
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS })
}

/** What went wrong in a page while it was watched. */
export interface PageProblems {
  /** console.error() calls and the browser's own error lines (a 404 for a script, a refused CSP…). */
  consoleErrors: string[]
  /** Exceptions no script caught. */
  pageErrors: string[]
  /** Requests that got no answer at all (refused, aborted, blocked). */
  failedRequests: string[]
  /** Requests to any origin but the server's: the console must never leave it. */
  foreignRequests: string[]
  /** Dialogs (alert, confirm, prompt) that opened: a sign of script the page did not mean to run. */
  dialogs: string[]
}

/** Records a page's problems from now on; `origin` is the server's (`http://127.0.0.1:1234`). */
export function watchPage(page: Page, origin: string): PageProblems {
  const problems: PageProblems = {
    consoleErrors: [],
    pageErrors: [],
    failedRequests: [],
    foreignRequests: [],
    dialogs: [],
  }
  const home = new URL(origin).origin
  page.on('console', (message) => {
    if (message.type() === 'error')
      problems.consoleErrors.push(`${message.text()} (${message.location().url})`)
  })
  page.on('pageerror', (error) => problems.pageErrors.push(String(error.stack ?? error)))
  page.on('requestfailed', (request) => {
    // A page leaving mid-load aborts what it had in flight; that is navigation, not a fault.
    if (request.failure()?.errorText === 'net::ERR_ABORTED') return
    problems.failedRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`)
  })
  page.on('request', (request) => {
    const url = new URL(request.url())
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) return // data:, blob:
    if (url.origin.replace(/^ws/, 'http') !== home)
      problems.foreignRequests.push(`${request.method()} ${request.url()}`)
  })
  page.on('websocket', (socket) => {
    const url = new URL(socket.url())
    if (url.origin.replace(/^ws/, 'http') !== home) problems.foreignRequests.push(`WebSocket ${socket.url()}`)
  })
  page.on('dialog', (dialog) => {
    problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`)
    dialog.dismiss().catch(() => {})
  })
  return problems
}

/** Fails the test when a watched page had any problem; `allow` lists console lines a test expects. */
export function expectNoProblems(problems: PageProblems, allow: RegExp[] = []): void {
  const unexpected = (lines: string[]) => lines.filter((line) => !allow.some((pattern) => pattern.test(line)))
  expect({
    consoleErrors: unexpected(problems.consoleErrors),
    pageErrors: problems.pageErrors,
    failedRequests: unexpected(problems.failedRequests),
    foreignRequests: problems.foreignRequests,
    dialogs: problems.dialogs,
  }).toEqual({ consoleErrors: [], pageErrors: [], failedRequests: [], foreignRequests: [], dialogs: [] })
}

/** A test's view of the browser: a fresh context and page, and what that page got wrong so far. */
export interface BrowserTab {
  browser: Browser
  context: BrowserContext
  page: Page
  problems: PageProblems
}

/**
 * Hooks for one test file: the browser starts before the first test and is closed after the last (whatever
 * happened); each test gets a new context, closed after it. `origin()` says which origin counts as home.
 *
 * @example
 * const tab = useBrowser(() => server.url)
 * test('signs in', async () => { await signIn(tab().page, server.url, ADMIN_KEY) })
 */
export function useBrowser(origin: () => string, options: BrowserContextOptions = {}): () => BrowserTab {
  let browser: Browser | undefined
  let current: BrowserTab | undefined
  beforeAll(async () => {
    if (!browserSkipReason) browser = await launchBrowser()
  }, 30_000)
  afterAll(async () => {
    await browser?.close().catch(() => {})
    browser = undefined
  }, 30_000)
  beforeEach(async () => {
    if (browserSkipReason) return
    // bun kills a timed-out test's child processes, the browser among them: the next test gets a new one.
    if (!browser?.isConnected()) browser = await launchBrowser()
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options })
    const page = await context.newPage()
    current = { browser, context, page, problems: watchPage(page, origin()) }
  }, 30_000)
  afterEach(async () => {
    await current?.context.close().catch(() => {})
    current = undefined
  })
  return () => {
    if (!current)
      throw new Error('no browser tab: useBrowser() hooks did not run (or the browser is missing)')
    return current
  }
}

/**
 * Signs in through the console's form (the field labelled "API key", the button "Sign in") and waits until the
 * form has gone, so the caller starts on a signed-in page.
 */
export async function signIn(page: Page, baseUrl: string, key: string): Promise<void> {
  if (!page.url().startsWith(baseUrl)) await page.goto(`${baseUrl}/`)
  const field = page.getByLabel('API key', { exact: true })
  await field.fill(key)
  await page.getByRole('button', { name: 'Sign in', exact: true }).click()
  await field.waitFor({ state: 'hidden', timeout: 10_000 })
}

/**
 * Saves a PNG of the page as `<name>.png` under `SCREENSHOTS_DIR` when set (to look at, or to keep from CI),
 * and returns its path; without the variable it still renders (so a broken page fails) and returns null.
 */
export async function screenshot(page: Page, name: string, fullPage = false): Promise<string | null> {
  const dir = process.env.SCREENSHOTS_DIR
  if (!dir) {
    await page.screenshot({ fullPage })
    return null
  }
  mkdirSync(dir, { recursive: true })
  const path = join(dir, `${name.replace(/[^\w.-]+/g, '-')}.png`)
  await page.screenshot({ path, fullPage })
  return path
}

/** Runs `body`, and when it throws saves a screenshot named after `name` first (see screenshot()). */
export async function shootOnFailure<T>(page: Page, name: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body()
  } catch (error) {
    const path = await screenshot(page, `failed-${name}`, true).catch(() => null)
    if (path) console.error(`screenshot of the failure: ${path}`)
    throw error
  }
}

/** The page's width beyond its viewport, in CSS pixels: 0 when nothing overflows sideways. */
export async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => {
    const root = document.scrollingElement ?? document.documentElement
    return Math.max(0, root.scrollWidth - root.clientWidth)
  })
}

/**
 * Follows one of the console's navigation links ("Tasks", "Chat", "Desktop", "Status", …). On a narrow screen
 * the links may sit behind a menu button: it is opened first when the link is not visible.
 */
export async function openNav(page: Page, name: string): Promise<void> {
  const link = page.getByRole('link', { name, exact: true }).first()
  if (!(await link.isVisible())) {
    const menu = page.getByRole('button', { name: /menu|navigation/i }).first()
    if (await menu.isVisible()) await menu.click()
  }
  await link.click()
}
