/** docker-compose.yml, the Dockerfile and nginx.conf, checked without a Docker engine: parsed and validated. */
import { describe, expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, tempDir } from './helpers.ts'

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

  test.skipIf(!Bun.which('nginx') || !Bun.which('openssl'))('passes nginx -t', async () => {
    const dir = tempDir('gantry-nginx-')
    const gen = Bun.spawnSync(
      [
        'openssl',
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'privkey.pem'),
        '-out',
        join(dir, 'fullchain.pem'),
      ],
      { stderr: 'pipe' },
    )
    expect(gen.exitCode).toBe(0)
    // Only what the test machine lacks is swapped: the compose service name and the certificate folder.
    const conf = read('nginx.conf')
      .replace('server gantry:9876', 'server 127.0.0.1:9876')
      .replaceAll('/etc/nginx/certs', dir)
      .replace('access_log    /dev/stdout;', `access_log ${dir}/access.log;`)
      .replace('error_log     /dev/stderr warn;', `error_log ${dir}/error.log warn;`)
    writeFileSync(join(dir, 'nginx.conf'), conf)
    const check = Bun.spawnSync(
      ['nginx', '-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `pid ${dir}/nginx.pid;`],
      {
        stderr: 'pipe',
      },
    )
    const output = check.stderr.toString()
    expect(output).toContain('syntax is ok')
    expect(check.exitCode).toBe(0)
  })
})
