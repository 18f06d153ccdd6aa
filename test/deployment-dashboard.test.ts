/**
 * deploy/grafana/gantry.json against a real scrape: every metric a panel queries is one Gantry exposes (so a
 * renamed metric cannot leave a dashboard silently empty), and every metric Gantry exposes under `gantry_` is
 * on some panel.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, startTestServer, type TestServer } from './helpers.ts'

const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/gantry.json'), 'utf8'))
let server: TestServer
let exposed = new Set<string>()

beforeAll(async () => {
  server = await startTestServer({ CODE_EXECUTION: 'off' })
  const scrape = await server.api('/metrics')
  expect(scrape.status).toBe(200)
  exposed = new Set([...String(scrape.body).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!))
}, 30_000)
afterAll(async () => {
  await server?.stop()
})

/** Metric names in a PromQL expression, histogram series suffixes folded into their family. */
const metricsIn = (expr: string) =>
  [...expr.matchAll(/\b((?:gantry|process|nodejs)_\w+)/g)].map((m) =>
    m[1]!.replace(/_(bucket|sum|count)$/, ''),
  )

test('the dashboard queries only metrics Gantry exposes, and shows every gantry_ metric', () => {
  const panels = dashboard.panels.filter((p: any) => p.type !== 'row')
  expect(panels.length).toBeGreaterThan(10)
  const queried = new Set<string>()
  for (const panel of panels)
    for (const target of panel.targets) {
      expect(target.expr, `${panel.title}`).toBeTruthy()
      for (const name of metricsIn(target.expr)) {
        expect(exposed.has(name), `${panel.title}: ${name}`).toBe(true)
        queried.add(name)
      }
    }
  const unused = [...exposed].filter((n) => n.startsWith('gantry_') && !queried.has(n))
  expect(unused).toEqual([])
  // The instance picker's query names an exposed metric too.
  const picker = dashboard.templating.list.find((v: any) => v.name === 'instance')
  for (const name of metricsIn(picker.definition)) expect(exposed.has(name)).toBe(true)
})
