/**
 * docker-compose.yml through the real Compose parser (`docker-compose config` resolves and validates the file,
 * with interpolation, without a Docker engine), then what scaling the app needs of the resolved file.
 * Skipped with a reason where docker-compose is not installed; in CI (CI=true) its absence is a failure.
 */
import { describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, tempDir } from './helpers.ts'

const COMPOSE = Bun.which('docker-compose')
const IN_CI = process.env.CI === 'true'

if (!COMPOSE && !IN_CI)
  console.warn('compose.test: skipped, docker-compose is not installed (apt-get install docker-compose)')

/** `docker-compose config` with only the variables given (an empty env file, so a developer's .env plays no part). */
function composeConfig(env: Record<string, string>, ...args: string[]) {
  const envFile = join(tempDir('gantry-compose-'), 'empty.env')
  writeFileSync(envFile, '')
  const run = Bun.spawnSync(
    [COMPOSE!, '--env-file', envFile, '-f', join(ROOT, 'docker-compose.yml'), 'config', ...args],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
      stdout: 'pipe',
      stderr: 'pipe',
    },
  )
  return { code: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() }
}

describe('docker-compose.yml, parsed by Compose', () => {
  test.if(IN_CI)('docker-compose is installed (CI)', () => {
    expect(COMPOSE, 'docker-compose must be installed in CI').toBeTruthy()
  })

  describe.skipIf(!COMPOSE)('config', () => {
    test('is valid with POSTGRES_PASSWORD set', () => {
      const run = composeConfig({ POSTGRES_PASSWORD: 'x' }, '--quiet')
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      const services = composeConfig({ POSTGRES_PASSWORD: 'x' }, '--services')
        .stdout.trim()
        .split('\n')
        .sort()
      expect(services).toEqual(['gantry', 'nginx', 'ollama', 'postgres'])
    })

    test('without POSTGRES_PASSWORD it stops and says what to set', () => {
      const run = composeConfig({})
      expect(run.code).not.toBe(0)
      expect(run.stderr).toContain('set POSTGRES_PASSWORD in .env')
    })

    test('resolved: the app scales (no fixed name, no published port, no shared data) and drains before a kill', () => {
      const run = composeConfig({ POSTGRES_PASSWORD: 'pw', METRICS_TOKEN: 'scrape-token-0123456789' })
      expect(run.code).toBe(0)
      const config = Bun.YAML.parse(run.stdout) as any
      const gantry = config.services.gantry
      expect(gantry.container_name).toBeUndefined()
      expect(gantry.ports).toBeUndefined()
      expect(gantry.expose).toEqual(['9876'])
      // A named volume at /data would be one DATA_DIR for every replica.
      for (const volume of gantry.volumes ?? [])
        expect(String(volume.target ?? volume)).not.toContain('/data')
      expect(gantry.environment.DATABASE_URL).toBe('postgres://gantry:pw@postgres:5432/gantry')
      expect(gantry.environment.METRICS_TOKEN).toBe('scrape-token-0123456789')
      // Longer than the default SHUTDOWN_TIMEOUT_MS (10 s): Docker's SIGKILL must not cut the drain short.
      const grace = /^(\d+)s$/.exec(String(gantry.stop_grace_period))
      expect(Number(grace?.[1])).toBeGreaterThan(10)
      // nginx is the only way in, with the project's nginx.conf; it waits for Postgres-backed app containers.
      expect(config.services.nginx.volumes).toContainEqual(
        expect.stringMatching(/\/nginx\.conf:\/etc\/nginx\/nginx\.conf:ro$/),
      )
      expect(Object.keys(config.services.nginx.depends_on)).toContain('gantry')
      expect(config.services.postgres.ports).toBeUndefined()
    })
  })
})
