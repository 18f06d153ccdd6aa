import { afterAll, describe, expect, test } from 'bun:test'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { startTestServer, tempDir } from '../../test/helpers.ts'
import { loadPlugins, orderByDependencies, PluginLoadError } from './loader.ts'

const silent = pino({ level: 'silent' })
const ELYSIA = JSON.stringify(import.meta.resolve('elysia'))
const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** Writes a plugins folder: name → index.ts source. */
function pluginsDir(plugins: Record<string, string>): string {
  const dir = tempDir('gantry-plugins-')
  dirs.push(dir)
  for (const [name, source] of Object.entries(plugins)) {
    mkdirSync(join(dir, name), { recursive: true })
    writeFileSync(join(dir, name, 'index.ts'), source)
  }
  return dir
}

const plugin = (name: string, meta = '{}', route = `/${name}`) =>
  `import { Elysia } from ${ELYSIA}\nexport const meta = ${meta}\nexport default new Elysia({ name: '${name}' }).get('${route}', () => ({ from: '${name}' }))\n`

async function loadError(dir: string, disabled: string[] = []): Promise<string> {
  try {
    await loadPlugins(dir, disabled, silent)
  } catch (err) {
    expect(err).toBeInstanceOf(PluginLoadError)
    return (err as Error).message
  }
  throw new Error('expected the load to fail')
}

describe('plugin loader', () => {
  test('orders by dependencies', async () => {
    const dir = pluginsDir({
      a: plugin('a', "{ dependsOn: ['c'] }"),
      b: plugin('b'),
      c: plugin('c', "{ dependsOn: ['b'] }"),
    })
    const { loaded } = await loadPlugins(dir, [], silent)
    expect(loaded.map((p) => p.name)).toEqual(['b', 'c', 'a'])
  })

  test('a syntax error stops startup naming the plugin', async () => {
    const message = await loadError(pluginsDir({ broken: 'export default new Elysia({ name: ' }))
    expect(message).toContain('plugin "broken"')
    expect(message).toContain('failed to import')
  })

  test('no default export stops startup naming the plugin', async () => {
    const message = await loadError(pluginsDir({ empty: 'export const meta = {}\n' }))
    expect(message).toContain('plugin "empty"')
    expect(message).toContain('no default export')
  })

  test('an unnamed Elysia instance is refused', async () => {
    const message = await loadError(
      pluginsDir({
        anon: `import { Elysia } from ${ELYSIA}\nexport default new Elysia().get('/x', () => 1)\n`,
      }),
    )
    expect(message).toContain('has no name')
  })

  test('a cycle is reported by its names', async () => {
    const message = await loadError(
      pluginsDir({ x: plugin('x', "{ dependsOn: ['y'] }"), y: plugin('y', "{ dependsOn: ['x'] }") }),
    )
    expect(message).toMatch(/cycle: (x → y → x|y → x → y)/)
  })

  test('a missing dependency is named', async () => {
    const message = await loadError(pluginsDir({ lonely: plugin('lonely', "{ dependsOn: ['ghost'] }") }))
    expect(message).toBe('plugin "lonely" cannot load: it depends on "ghost", which is not installed')
  })

  test('a disabled dependency is named as disabled', async () => {
    const dir = pluginsDir({ base: plugin('base'), top: plugin('top', "{ dependsOn: ['base'] }") })
    expect(await loadError(dir, ['base'])).toContain('"base", which is disabled by PLUGINS_DISABLED')
  })

  test('an optional plugin that fails is skipped and shown as failed', async () => {
    const dir = pluginsDir({
      good: plugin('good'),
      shaky: `export const meta = { optional: true }\nthrow new Error('no GPU here')\n`,
    })
    // A module that throws cannot tell us it is optional: that takes meta.json, read without running it.
    expect(await loadError(dir)).toContain('no GPU here')
    writeFileSync(join(dir, 'shaky', 'meta.json'), '{ "optional": true }')
    const skipped = await loadPlugins(dir, [], silent)
    expect(skipped.statuses.find((s) => s.name === 'shaky')).toMatchObject({
      status: 'failed',
      optional: true,
    })
    expect(skipped.statuses.find((s) => s.name === 'shaky')?.error).toContain('no GPU here')
    const dir2 = pluginsDir({
      good: plugin('good'),
      shaky: 'export const meta = { optional: true }\nexport default 42\n',
    })
    const { loaded, statuses } = await loadPlugins(dir2, [], silent)
    expect(loaded.map((p) => p.name)).toEqual(['good'])
    expect(statuses.find((s) => s.name === 'shaky')).toMatchObject({ status: 'failed', optional: true })
  })

  test('PLUGINS_DISABLED skips a plugin and lists it as disabled', async () => {
    const dir = pluginsDir({ one: plugin('one'), two: plugin('two') })
    const { loaded, statuses } = await loadPlugins(dir, ['two'], silent)
    expect(loaded.map((p) => p.name)).toEqual(['one'])
    expect(statuses.find((s) => s.name === 'two')?.status).toBe('disabled')
  })

  test('orderByDependencies is stable for independent plugins', () => {
    const list = ['c', 'a', 'b'].map((name) => ({ name, meta: {} }))
    expect(orderByDependencies(list).map((p) => p.name)).toEqual(['a', 'b', 'c'])
  })
})

describe('a dropped-in plugin', () => {
  test('five lines in plugins/ serve a route, run hooks in order and appear in / and /ready', async () => {
    const dir = pluginsDir({
      hello: `import { Elysia } from ${ELYSIA}
export const meta = { entryPoints: { hello: '/hello' } }
export default new Elysia({ name: 'hello' })
  .get('/hello', () => ({ hello: 'world' }))
  .onStart((app) => { (app.decorator as any).gantry.state.set('hello:started', true) })`,
    })
    const server = await startTestServer({ PLUGINS_DIR: dir })
    try {
      expect((await server.api('/hello', { key: null })).body).toEqual({ hello: 'world' })
      expect(server.running.gantry.state.get('hello:started')).toBe(true)
      const root = (await server.api('/', { key: null })).body
      expect(root.endpoints.hello).toBe('/hello')
      expect(root.plugins).toContainEqual({ name: 'hello', status: 'loaded' })
      expect((await server.api('/ready', { key: null })).body.plugins).toContainEqual({
        name: 'hello',
        status: 'loaded',
      })
    } finally {
      await server.stop()
    }
  })

  test('its own migrations are applied after the core ones, with no core edit', async () => {
    const dir = pluginsDir({ notes: plugin('notes') })
    mkdirSync(join(dir, 'notes', 'migrations', 'meta'), { recursive: true })
    writeFileSync(
      join(dir, 'notes', 'migrations', '0000_notes.sql'),
      'CREATE TABLE "notes" ("id" text PRIMARY KEY, "user_id" text REFERENCES "users"("id"));',
    )
    writeFileSync(
      join(dir, 'notes', 'migrations', 'meta', '_journal.json'),
      JSON.stringify({
        version: '7',
        dialect: 'postgresql',
        entries: [{ idx: 0, version: '7', when: 1700000000000, tag: '0000_notes', breakpoints: true }],
      }),
    )
    const server = await startTestServer({ PLUGINS_DIR: dir })
    try {
      const rows = await server.running.gantry.store.query<{ n: number }>(
        "select count(*)::int as n from information_schema.tables where table_name = 'notes'",
      )
      expect(rows[0]!.n).toBe(1)
    } finally {
      await server.stop()
    }
  })
})
