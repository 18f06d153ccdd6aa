/**
 * docker-compose.yml, the Dockerfile and nginx.conf, checked without a Docker engine: parsed and validated;
 * and package.json: what runs in production is in "dependencies" (`npm ci --omit=dev` must give a server that
 * starts), and `engines.node` is the Node every installed package accepts.
 */
import { describe, expect, test } from 'bun:test'
import { existsSync, readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
import { ROOT } from './helpers.ts'

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8')

describe('docker-compose.yml', () => {
  const compose = Bun.YAML.parse(read('docker-compose.yml')) as any

  test('defines the stack: app, Postgres and nginx (Ollama optional)', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gantry', 'nginx', 'ollama', 'postgres'])
    expect(compose.services.ollama.profiles).toEqual(['ollama'])
  })

  test('references are consistent: services, volumes, the database URL and the nginx config', () => {
    const services = new Set(Object.keys(compose.services))
    for (const [name, svc] of Object.entries<any>(compose.services)) {
      const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on ?? {})
      for (const dep of deps) expect(services.has(dep), `${name} depends on ${dep}`).toBe(true)
      for (const volume of svc.volumes ?? []) {
        const source = String(volume).split(':')[0]!
        if (!source.startsWith('.') && !source.startsWith('/'))
          expect(Object.keys(compose.volumes), `${name} uses volume ${source}`).toContain(source)
      }
    }
    expect(compose.services.gantry.environment.DATABASE_URL).toMatch(
      /^postgres:\/\/gantry:.*@postgres:5432\/gantry$/,
    )
    expect(compose.services.nginx.volumes).toContain('./nginx.conf:/etc/nginx/nginx.conf:ro')
    expect(compose.services.gantry.build).toBe('.')
  })
})

describe('Dockerfile', () => {
  const lines = read('Dockerfile')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
  test('installs from the lockfile, exposes the default port and starts with npm start', () => {
    expect(lines[0]).toMatch(/^FROM node:20/)
    expect(lines.some((l) => /npm ci/.test(l))).toBe(true)
    expect(lines).toContain('EXPOSE 9876')
    expect(lines.at(-1)).toBe('CMD ["npm", "start"]')
    for (const l of lines) expect(l).toMatch(/^(FROM|RUN|WORKDIR|COPY|ENV|VOLUME|EXPOSE|HEALTHCHECK|CMD| )/)
  })
})

describe('nginx.conf', () => {
  test('proxies WebSockets with Upgrade, SSE unbuffered, and rate-limits', () => {
    const conf = read('nginx.conf')
    expect(conf).toContain('proxy_set_header Upgrade $http_upgrade')
    expect(conf).toContain('proxy_buffering off')
    expect(conf).toContain('limit_req_zone')
    expect(conf).toContain('X-Forwarded-Proto $scheme')
  })

  test('no location sets its own proxy headers (it would drop every inherited one)', () => {
    const conf = read('nginx.conf').replace(/#.*$/gm, '')
    const firstLocation = conf.search(/^\s*location\s/m)
    expect(firstLocation).toBeGreaterThan(0)
    expect(conf.slice(firstLocation)).not.toContain('proxy_set_header')
  })
  // nginx -t and the behaviour through a real nginx: test/nginx.test.ts
})

/** The packages a file imports at run time (type-only imports, relative paths and built-ins excluded). */
function runtimeImports(text: string): string[] {
  const builtins = new Set(builtinModules)
  const specs = [
    ...text.matchAll(
      /^\s*(?:import|export)\s+(?!type\b)[^'"]*?\bfrom\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm,
    ),
  ].map((m) => m[1] ?? m[2] ?? m[3] ?? '')
  return specs
    .filter((spec) => spec && !/^[./]/.test(spec) && !spec.startsWith('node:') && !spec.startsWith('bun:'))
    .filter((spec) => spec !== 'bun' && !builtins.has(spec))
    .map((spec) =>
      spec
        .split('/')
        .slice(0, spec.startsWith('@') ? 2 : 1)
        .join('/'),
    )
}

describe('package.json: what production needs', () => {
  const pkg = JSON.parse(read('package.json'))
  const dependencies = Object.keys(pkg.dependencies ?? {})

  test('bun (the server runs on it) and typescript (the sandbox type-checks with it) are dependencies', () => {
    expect(dependencies).toContain('bun')
    expect(dependencies).toContain('typescript')
  })

  test('every package that src/, plugins/ and bin/ import outside tests is a dependency, not a devDependency', () => {
    const missing: string[] = []
    let scanned = 0
    for (const root of ['src', 'plugins', 'bin'])
      for (const file of new Bun.Glob(`${root}/**/*.{ts,tsx,js,mjs}`).scanSync(ROOT)) {
        if (/\.test\.tsx?$|(^|\/)testing\.ts$/.test(file)) continue
        scanned++
        for (const name of runtimeImports(read(file)))
          if (!dependencies.includes(name)) missing.push(`${name} (imported by ${file})`)
      }
    expect(scanned).toBeGreaterThan(50)
    expect([...new Set(missing)]).toEqual([])
  })

  test('engines.node is a Node version every installed package accepts', () => {
    const engines = String(pkg.engines?.node ?? '')
    const minimum = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(engines)
    expect(minimum, `engines.node is ">=<version>", got "${engines}"`).not.toBeNull()
    const [, major, minor = '0', patch = '0'] = minimum!
    const oldest = `${major}.${minor}.${patch}`
    // The README promises Node 20+: the oldest Node allowed must be a 20.
    expect(major).toBe('20')
    const lock = JSON.parse(read('package-lock.json'))
    const refusing: string[] = []
    let checked = 0
    for (const path of Object.keys(lock.packages ?? {})) {
      const manifest = join(ROOT, path, 'package.json')
      if (!path || !existsSync(manifest)) continue
      const range = JSON.parse(readFileSync(manifest, 'utf8')).engines?.node
      if (typeof range !== 'string' || !range.trim()) continue
      checked++
      if (!Bun.semver.satisfies(oldest, range))
        refusing.push(`${path.replace(/^.*node_modules\//, '')}: ${range}`)
    }
    expect(checked).toBeGreaterThan(20)
    expect(refusing, `packages that refuse Node ${oldest} (engines.node "${engines}")`).toEqual([])
  })
})
