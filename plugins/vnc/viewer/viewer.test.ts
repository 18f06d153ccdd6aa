/** The standalone /vnc/ viewer in a real browser: signing in hides the form; Start and Stop follow the desktop. */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import AxeBuilder from '@axe-core/playwright'
import type { Page } from 'playwright-core'
import {
  describeBrowser,
  expectNoProblems,
  screenshot,
  shootOnFailure,
  signIn,
  useBrowser,
} from '../../../test/browser.ts'
import { ADMIN_KEY, startTestServer, type TestServer } from '../../../test/helpers.ts'
import { desktopOf } from '../service.ts'

const haveDesktop = ['Xvfb', 'x11vnc', 'display'].every((binary) => Bun.which(binary))

let server: TestServer
beforeAll(async () => {
  server = await startTestServer()
}, 60_000)
afterAll(async () => {
  await server?.api('/api/vnc/disconnect', { method: 'POST', json: {} })
  await server?.stop()
}, 30_000)

/** Which of the header's two buttons a person can see. */
const buttons = async (page: Page) => ({
  start: await page.getByRole('button', { name: 'Start desktop' }).isVisible(),
  stop: await page.getByRole('button', { name: 'Stop desktop' }).isVisible(),
})

/** The colour noVNC's canvas shows at the middle of the desktop, as [r, g, b]. */
const middlePixel = (page: Page) =>
  page.locator('#screen canvas').evaluate((canvas: HTMLCanvasElement) => {
    const pixel = canvas.getContext('2d')?.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data
    return pixel ? [pixel[0], pixel[1], pixel[2]] : null
  })

/** Paints the X root window of `display` one colour, with ImageMagick's display (a real X client). */
function paintRoot(display: string, colour: string) {
  // It exits 1 even when it painted; the canvas check below is what tells.
  // The display admits only Gantry's cookie (issue 12 item 9): borrow it.
  const env = { ...process.env, XAUTHORITY: desktopOf(server.running.gantry).xauthority }
  Bun.spawnSync(['display', '-display', display, '-window', 'root', `xc:${colour}`], { env })
}

describeBrowser('the /vnc/ viewer', () => {
  const tab = useBrowser(() => server.url)

  test('signed out it shows only the sign-in form; signing in hides the form', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'vnc-sign-in', async () => {
      await page.goto(`${server.url}/vnc/`)
      const form = page.locator('form#login')
      await form.waitFor({ state: 'visible' })
      await screenshot(page, 'vnc-signed-out')
      await signIn(page, server.url, ADMIN_KEY)
      expect(await form.isVisible()).toBe(false)
      await page.getByText('stopped').waitFor()
      expect(await buttons(page)).toEqual({ start: true, stop: false })
      await screenshot(page, 'vnc-signed-in')
    })
    // The status probe before signing in is an expected 401.
    expectNoProblems(problems, [/401 \(Unauthorized\)/])
  })

  test('no serious or critical accessibility violation, signed out or in', async () => {
    const { page } = tab()
    const serious = async () =>
      (await new AxeBuilder({ page }).analyze()).violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id}: ${v.nodes[0]?.failureSummary ?? v.help}`)
    await page.goto(`${server.url}/vnc/`)
    await page.locator('form#login').waitFor()
    expect(await serious()).toEqual([])
    await signIn(page, server.url, ADMIN_KEY)
    await page.getByText('stopped').waitFor()
    expect(await serious()).toEqual([])
  }, 30_000)

  test('a wrong key keeps the form and says why', async () => {
    const { page } = tab()
    await page.goto(`${server.url}/vnc/`)
    await page.getByLabel('API key').fill('gk_nope_not-a-key')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText(/invalid|unknown|not valid|sign-in failed/i).waitFor()
    expect(await page.locator('form#login').isVisible()).toBe(true)
  }, 30_000)

  test.skipIf(!haveDesktop)(
    'Start shows the desktop and offers Stop; Stop offers Start again; Start after Stop offers Stop',
    async () => {
      const { page, problems } = tab()
      await shootOnFailure(page, 'vnc-start-stop', async () => {
        await page.goto(`${server.url}/vnc/`)
        await signIn(page, server.url, ADMIN_KEY)
        await page.getByText('stopped').waitFor()
        for (const round of [1, 2]) {
          await page.getByRole('button', { name: 'Start desktop' }).click()
          await page.getByText(/^connected to :\d+/).waitFor({ timeout: 30_000 })
          // What x11vnc sends is what the canvas shows: a colour painted on the X display reaches it.
          const [r, g, b] = round === 1 ? [46, 139, 87] : [178, 34, 34]
          paintRoot((await server.api('/api/vnc/status')).body.display, `rgb(${r},${g},${b})`)
          const deadline = Date.now() + 10_000
          let seen = await middlePixel(page)
          while (String(seen) !== String([r, g, b]) && Date.now() < deadline) {
            await Bun.sleep(100)
            seen = await middlePixel(page)
          }
          expect(seen).toEqual([r, g, b])
          expect(await buttons(page)).toEqual({ start: false, stop: true })
          await screenshot(page, `vnc-running-${round}`)

          await page.getByRole('button', { name: 'Stop desktop' }).click()
          await page.getByText('stopped').waitFor({ timeout: 15_000 })
          expect(await buttons(page)).toEqual({ start: true, stop: false })
          expect((await server.api('/api/vnc/status')).body.state).toBe('stopped')
          await screenshot(page, `vnc-stopped-${round}`)
        }
      })
      expectNoProblems(problems, [/401 \(Unauthorized\)/])
    },
    90_000,
  )
})
