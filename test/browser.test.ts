/** The browser harness itself, on trivial pages: what it records about a page, and signIn(). */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import {
  describeBrowser,
  expectNoProblems,
  horizontalOverflow,
  screenshot,
  signIn,
  useBrowser,
} from './browser.ts'

const SIGN_IN = `<!doctype html><html lang="en"><title>t</title>
<form id="f"><label>API key <input id="k" type="password"></label><button>Sign in</button></form>
<p id="who" hidden></p>
<script>
document.getElementById('f').addEventListener('submit', (e) => {
  e.preventDefault()
  document.getElementById('f').hidden = true
  const who = document.getElementById('who')
  who.textContent = 'signed in with ' + document.getElementById('k').value
  who.hidden = false
})
</script></html>`

const TROUBLED = `<!doctype html><html lang="en"><title>t</title><p>troubled</p>
<script>
console.error('something broke')
setTimeout(() => { throw new Error('nobody caught me') })
fetch('http://127.0.0.2:9/elsewhere').catch(() => {})
alert('hello')
</script></html>`

let server: ReturnType<typeof Bun.serve>
beforeAll(() => {
  server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (req) =>
      new Response(new URL(req.url).pathname === '/troubled' ? TROUBLED : SIGN_IN, {
        headers: { 'content-type': 'text/html; charset=utf-8' },
      }),
  })
})
afterAll(() => server.stop(true))
const origin = () => `http://127.0.0.1:${server.port}`

describeBrowser('the browser harness', () => {
  const tab = useBrowser(origin)

  test('a clean page has no problems; signIn fills "API key", presses "Sign in" and waits for the form to go', async () => {
    const { page, problems } = tab()
    await signIn(page, origin(), 'gk_example')
    expect(await page.locator('#who').textContent()).toBe('signed in with gk_example')
    expect(await horizontalOverflow(page)).toBe(0)
    await screenshot(page, 'harness-signed-in')
    expectNoProblems(problems)
  })

  test('console errors, uncaught exceptions, dialogs and requests to other origins are all recorded', async () => {
    const { page, problems } = tab()
    await page.goto(`${origin()}/troubled`)
    await page.waitForFunction(() => true)
    const deadline = Date.now() + 5000
    while (
      Date.now() < deadline &&
      (problems.pageErrors.length === 0 || problems.failedRequests.length === 0)
    )
      await Bun.sleep(50)
    expect(problems.consoleErrors.some((line) => line.includes('something broke'))).toBe(true)
    expect(problems.pageErrors.join('\n')).toContain('nobody caught me')
    expect(problems.dialogs).toEqual(['alert: hello'])
    expect(problems.foreignRequests).toEqual(['GET http://127.0.0.2:9/elsewhere'])
    expect(problems.failedRequests.join('\n')).toContain('127.0.0.2:9/elsewhere')
    expect(() => expectNoProblems(problems)).toThrow()
  })

  test('each test gets a fresh context: nothing carries over', async () => {
    const { context, page } = tab()
    expect(await context.cookies()).toEqual([])
    expect(page.url()).toBe('about:blank')
  })
})
