/**
 * Every page of the console passes an axe-core scan with no serious or critical violation, its main controls
 * have accessible names and are reachable with the keyboard, and it logs no console error; in light and in
 * dark mode (the console follows the system setting, and contrast is checked in both).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import AxeBuilder from '@axe-core/playwright'
import {
  describeBrowser,
  expectNoProblems,
  screenshot,
  shootOnFailure,
  useBrowser,
} from '../../test/browser.ts'
import {
  CONSOLE_PAGES,
  type ConsoleWorld,
  expectKeyboardReachable,
  startConsoleWorld,
  visit,
} from '../../test/console-pages.ts'

let world: ConsoleWorld
beforeAll(async () => {
  world = await startConsoleWorld()
}, 90_000)
afterAll(() => world?.stop(), 30_000)

// The signed-out page asks who the user is; its 401 is how it learns it must show the form.
const SIGNED_OUT_PROBE = /status of 401 \(Unauthorized\)/

for (const colorScheme of ['light', 'dark'] as const) {
  describeBrowser(`the console's pages (${colorScheme})`, () => {
    const tab = useBrowser(() => world.server.url, { colorScheme })

    for (const which of CONSOLE_PAGES) {
      test(`${which.name}: no serious or critical axe violation; main controls named and reachable by keyboard`, async () => {
        const { page, problems } = tab()
        await shootOnFailure(page, `a11y-${colorScheme}-${which.name}`, async () => {
          await visit(page, world, which)
          const { violations } = await new AxeBuilder({ page }).analyze()
          const serious = violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => {
              const where = v.nodes.map((n) => n.target.join(' ')).slice(0, 5)
              return `${v.impact} ${v.id}: ${v.help} — ${where.join(', ')}; ${v.nodes[0]?.failureSummary ?? ''}`
            })
          expect(serious).toEqual([])
          // The controls are found by role and accessible name, so finding them proves they are named.
          await expectKeyboardReachable(page, which.controls(page))
          await screenshot(page, `a11y-${colorScheme}-${which.name}`)
        })
        expectNoProblems(problems, which.name === 'sign-in' ? [SIGNED_OUT_PROBE] : [])
      }, 60_000)
    }
  })
}
