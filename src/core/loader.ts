import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Elysia } from 'elysia'
import type { PluginStatus } from './context.ts'
import { type MigrationSet, pluginMigrations } from './db.ts'
import type { Logger } from './logger.ts'

/**
 * What a plugin may declare beside its default export: `export const meta: PluginMeta = {...}`, or the same
 * keys in a `meta.json` next to index.ts (read even when the plugin fails to import).
 */
export interface PluginMeta {
  /** Folder names of plugins that must load first. */
  dependsOn?: string[]
  /** An optional plugin that fails is skipped with a warning instead of stopping the server. */
  optional?: boolean
  description?: string
  /** Entry points listed by `GET /`, e.g. `{ tasks: '/tasks' }`. */
  entryPoints?: Record<string, string>
}

export interface LoadedPlugin {
  name: string
  dir: string
  instance: Elysia<any, any, any, any, any, any, any>
  meta: PluginMeta
}

/** A plugin that cannot load; the message names the plugin and the reason. */
export class PluginLoadError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PluginLoadError'
  }
}

interface Candidate {
  name: string
  dir: string
  instance?: LoadedPlugin['instance']
  meta: PluginMeta
  error?: string
}

const NAME = /^[a-z0-9][a-z0-9_-]*$/

function isElysia(value: unknown): value is LoadedPlugin['instance'] {
  if (value instanceof Elysia) return true
  // A plugin resolving its own copy of elysia still counts if it quacks like one.
  return Boolean(
    value && typeof value === 'object' && 'routes' in value && 'config' in value && 'use' in value,
  )
}

/** `meta.json` beside index.ts: read without running the plugin, so `optional` holds even when import fails. */
function staticMeta(dir: string): PluginMeta {
  const file = join(dir, 'meta.json')
  if (!existsSync(file)) return {}
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PluginMeta
  } catch (err) {
    throw new PluginLoadError(
      `plugin "${dir.split('/').pop()}": meta.json is not valid JSON: ${(err as Error).message}`,
    )
  }
}

async function importPlugin(name: string, dir: string): Promise<Candidate> {
  const entry = join(dir, 'index.ts')
  const declared = staticMeta(dir)
  let mod: Record<string, unknown>
  try {
    mod = await import(entry)
  } catch (err) {
    return { name, dir, meta: declared, error: `failed to import ${entry}: ${(err as Error).message}` }
  }
  const meta = { ...declared, ...(mod.meta && typeof mod.meta === 'object' ? mod.meta : {}) } as PluginMeta
  const instance = mod.default
  if (!isElysia(instance))
    return {
      name,
      dir,
      meta,
      error: `index.ts must default-export a named Elysia instance (got ${instance === undefined ? 'no default export' : typeof instance})`,
    }
  if (!instance.config.name)
    return {
      name,
      dir,
      meta,
      error: 'the default-exported Elysia instance has no name: use new Elysia({ name: ... })',
    }
  if (meta.dependsOn && !Array.isArray(meta.dependsOn))
    return { name, dir, meta: {}, error: 'meta.dependsOn must be an array of plugin folder names' }
  return { name, dir, instance, meta }
}

/** Orders plugins so each comes after what it depends on; a cycle is reported by its names. */
export function orderByDependencies<T extends { name: string; meta: PluginMeta }>(plugins: T[]): T[] {
  const byName = new Map(plugins.map((p) => [p.name, p]))
  const ordered: T[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (p: T, path: string[]) => {
    if (state.get(p.name) === 'done') return
    if (state.get(p.name) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(p.name)), p.name]
      throw new PluginLoadError(`plugin dependency cycle: ${cycle.join(' → ')}`)
    }
    state.set(p.name, 'visiting')
    for (const dep of [...(p.meta.dependsOn ?? [])].sort()) {
      const d = byName.get(dep)
      if (d) visit(d, [...path, p.name])
    }
    state.set(p.name, 'done')
    ordered.push(p)
  }
  for (const p of [...plugins].sort((a, b) => a.name.localeCompare(b.name))) visit(p, [])
  return ordered
}

/**
 * Finds `plugins/<name>/index.ts`, imports each, drops disabled ones, checks dependencies and orders them.
 * Throws a PluginLoadError naming the plugin for any non-optional failure.
 */
export async function loadPlugins(
  dir: string,
  disabled: string[],
  log: Logger,
): Promise<{ loaded: LoadedPlugin[]; statuses: PluginStatus[]; migrations: MigrationSet[] }> {
  const names = existsSync(dir)
    ? readdirSync(dir).filter(
        (n) =>
          !n.startsWith('.') && statSync(join(dir, n)).isDirectory() && existsSync(join(dir, n, 'index.ts')),
      )
    : []
  const statuses: PluginStatus[] = []
  const candidates: Candidate[] = []
  for (const name of names.sort()) {
    if (!NAME.test(name))
      throw new PluginLoadError(`plugin folder "${name}": names are lower-case letters, digits, - and _`)
    if (disabled.includes(name)) {
      statuses.push({ name, status: 'disabled', optional: false, dependsOn: [] })
      continue
    }
    candidates.push(await importPlugin(name, join(dir, name)))
  }
  const status = (c: Candidate, s: PluginStatus['status'], error?: string): PluginStatus => ({
    name: c.name,
    status: s,
    optional: Boolean(c.meta.optional),
    dependsOn: c.meta.dependsOn ?? [],
    description: c.meta.description,
    entryPoints: c.meta.entryPoints,
    error,
  })
  const fail = (c: Candidate, reason: string) => {
    if (!c.meta.optional) throw new PluginLoadError(`plugin "${c.name}" cannot load: ${reason}`)
    log.warn({ plugin: c.name, reason }, 'optional plugin skipped')
    statuses.push(status(c, 'failed', reason))
  }
  // Drop failures until stable: a plugin whose dependency failed, is missing or disabled fails too.
  let usable = candidates
  for (let changed = true; changed; ) {
    changed = false
    const names = new Set(usable.filter((c) => !c.error).map((c) => c.name))
    const next: Candidate[] = []
    for (const c of usable) {
      if (c.error) {
        fail(c, c.error)
        changed = true
        continue
      }
      const missing = (c.meta.dependsOn ?? []).find((d) => !names.has(d))
      if (missing) {
        const why = disabled.includes(missing)
          ? 'is disabled by PLUGINS_DISABLED'
          : candidates.some((x) => x.name === missing)
            ? 'failed to load'
            : 'is not installed'
        fail(c, `it depends on "${missing}", which ${why}`)
        changed = true
        continue
      }
      next.push(c)
    }
    usable = next
  }
  const loaded = orderByDependencies(usable).map((c) => ({
    name: c.name,
    dir: c.dir,
    instance: c.instance!,
    meta: c.meta,
  }))
  for (const p of loaded) statuses.push(status(p, 'loaded'))
  statuses.sort((a, b) => a.name.localeCompare(b.name))
  const migrations = loaded.flatMap((p) => pluginMigrations(p.dir, p.name) ?? [])
  return { loaded, statuses, migrations }
}
