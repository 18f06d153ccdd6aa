/**
 * The console on a 375×667 phone screen: every page fits (no sideways scrolling), its main controls are on
 * screen, and the main jobs work with touch: start a task and see it listed, send a chat message and see
 * the answer.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import type { Locator } from 'playwright-core'
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
import {
  CONSOLE_PAGES,
  type ConsoleWorld,
  SESSION_TITLE,
  startConsoleWorld,
  visit,
} from '../../test/console-pages.ts'
import { ADMIN_KEY } from '../../test/helpers.ts'

const PHONE = { width: 375, height: 667 }

let world: ConsoleWorld
beforeAll(async () => {
  world = await startConsoleWorld()
}, 90_000)
afterAll(() => world?.stop(), 30_000)

const SIGNED_OUT_PROBE = /status of 401 \(Unauthorized\)/

/** Where a control sits across the screen: it must be within the phone's width once scrolled to. */
async function expectOnScreen(control: Locator) {
  await control.scrollIntoViewIfNeeded()
  const box = await control.boundingBox()
  expect(box).not.toBeNull()
  expect(box!.x).toBeGreaterThanOrEqual(0)
  expect(box!.x + box!.width).toBeLessThanOrEqual(PHONE.width + 0.5)
  expect(box!.width).toBeGreaterThan(0)
}

describeBrowser('the console on a phone', () => {
  const tab = useBrowser(() => world.server.url, {
    viewport: PHONE,
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 2,
  })

  for (const which of CONSOLE_PAGES) {
    test(`${which.name}: nothing overflows sideways; the main controls are on screen`, async () => {
      const { page, problems } = tab()
      await shootOnFailure(page, `phone-${which.name}`, async () => {
        await visit(page, world, which)
        expect(await horizontalOverflow(page)).toBe(0)
        // Navigation links may sit behind a menu on a phone; the page's own controls must be there.
        for (const control of which.controls(page))
          if (!(await isNavLink(control))) await expectOnScreen(control)
        await screenshot(page, `phone-${which.name}`)
      })
      expectNoProblems(problems, which.name === 'sign-in' ? [SIGNED_OUT_PROBE] : [])
    }, 60_000)
  }

  test('start a task and send a chat message with touch', async () => {
    const { page, problems } = tab()
    await shootOnFailure(page, 'phone-jobs', async () => {
      await page.goto(`${world.server.url}/`)
      await signIn(page, world.server.url, ADMIN_KEY)
      await openNav(page, 'Tasks')
      await page.getByLabel('Prompt', { exact: true }).fill('Build a slugify function')
      await page.getByRole('button', { name: 'Start task', exact: true }).tap()
      await page
        .getByRole('list', { name: 'Tasks' })
        .getByText('Build a slugify function')
        .waitFor({ timeout: 20_000 })
      expect(await horizontalOverflow(page)).toBe(0)
      await screenshot(page, 'phone-task-started')
      await openNav(page, 'Chat')
      await page.getByRole('list', { name: 'Sessions' }).getByText(SESSION_TITLE).tap()
      await page.getByLabel('Message', { exact: true }).fill('And at sunset?')
      await page.getByRole('button', { name: 'Send', exact: true }).tap()
      await page.getByText('Simulated answer to: And at sunset?').first().waitFor({ timeout: 20_000 })
      expect(await horizontalOverflow(page)).toBe(0)
      await screenshot(page, 'phone-chat')
    })
    expectNoProblems(problems)
  }, 90_000)
})

async function isNavLink(control: Locator): Promise<boolean> {
  return control.evaluate((e) => e.tagName === 'A' && Boolean(e.closest('nav')))
}
