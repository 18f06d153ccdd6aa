/** docker-compose.yml, the Dockerfile and nginx.conf, checked without a Docker engine: parsed and validated. */
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
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
