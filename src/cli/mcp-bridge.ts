/**
 * A stdio-to-HTTP bridge for MCP clients that only start local commands (Claude Desktop's configuration):
 * JSON-RPC lines read from stdin are relayed to Gantry's `/mcp` over Streamable HTTP with the API key, and every
 * answer or notification coming back is written to stdout. The terminal client runs it as `gantry mcp`; run
 * alone (`bun src/cli/mcp-bridge.ts`) it reads GANTRY_URL and GANTRY_API_KEY.
 */
import type { Readable, Writable } from 'node:stream'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import {
  ErrorCode,
  isInitializeRequest,
  isJSONRPCRequest,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js'

export interface McpBridgeOptions {
  /** The server's base URL (`https://gantry.lan`) or its MCP endpoint (`…/mcp`). */
  url: string
  /** An API key (`gk_…`). */
  key: string
  stdin?: Readable
  stdout?: Writable
  /** Where problems are reported; never stdout, which carries only JSON-RPC. */
  stderr?: Writable
  /** fetch to use (tests pass one that trusts their certificate). */
  fetch?: typeof fetch
}

/** `https://host` and `https://host/` become `https://host/mcp`; a URL already naming a path is kept. */
export function mcpEndpoint(url: string): URL {
  const parsed = new URL(url)
  if (parsed.pathname === '' || parsed.pathname === '/') parsed.pathname = '/mcp'
  return parsed
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err))

/**
 * Relays MCP between stdio and Gantry until stdin ends (the client quit) or the bridge is closed.
 * Resolves then; a request the server could not be reached for is answered with a JSON-RPC error, never dropped.
 * @example await runMcpBridge({ url: 'https://gantry.lan', key: process.env.GANTRY_API_KEY! })
 */
export async function runMcpBridge(options: McpBridgeOptions): Promise<void> {
  const stdin = options.stdin ?? process.stdin
  const stdout = options.stdout ?? process.stdout
  const stderr = options.stderr ?? process.stderr
  const local = new StdioServerTransport(stdin, stdout)
  const remote = new StreamableHTTPClientTransport(mcpEndpoint(options.url), {
    requestInit: { headers: { authorization: `Bearer ${options.key}` } },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  const initializeIds = new Set<string | number>()
  let closed = false
  let finish: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    finish = resolve
  })
  const close = async () => {
    if (closed) return
    closed = true
    stdin.off('end', close)
    stdin.off('close', close)
    await remote.close().catch(() => {})
    await local.close().catch(() => {})
    finish()
  }

  local.onmessage = (message: JSONRPCMessage) => {
    if (isJSONRPCRequest(message) && isInitializeRequest(message)) initializeIds.add(message.id)
    remote.send(message).catch(async (err) => {
      stderr.write(`gantry mcp: ${describe(err)}\n`)
      // The client is waiting on this id: tell it why instead of letting it hang.
      if (isJSONRPCRequest(message))
        await local
          .send({
            jsonrpc: '2.0',
            id: message.id,
            error: {
              code: ErrorCode.ConnectionClosed,
              message: `Gantry at ${options.url}: ${describe(err)}`,
            },
          })
          .catch(() => {})
    })
  }
  remote.onmessage = (message: JSONRPCMessage) => {
    // The HTTP transport sends the negotiated version on every later request, as the specification asks.
    if ('id' in message && 'result' in message && initializeIds.delete(message.id)) {
      const version = (message.result as { protocolVersion?: unknown }).protocolVersion
      if (typeof version === 'string') remote.setProtocolVersion(version)
    }
    local.send(message).catch(() => {})
  }
  remote.onerror = (err) => stderr.write(`gantry mcp: ${describe(err)}\n`)
  local.onerror = (err) => stderr.write(`gantry mcp: unreadable input: ${describe(err)}\n`)
  local.onclose = () => void close()

  await remote.start()
  await local.start()
  stdin.on('end', close)
  stdin.on('close', close)
  return done
}

if (import.meta.main) {
  const url = process.env.GANTRY_URL
  const key = process.env.GANTRY_API_KEY
  if (!url || !key) {
    process.stderr.write('gantry mcp: set GANTRY_URL (e.g. https://gantry.lan) and GANTRY_API_KEY\n')
    process.exit(2)
  }
  try {
    mcpEndpoint(url)
  } catch {
    process.stderr.write(`gantry mcp: GANTRY_URL is not a URL: ${url}\n`)
    process.exit(2)
  }
  await runMcpBridge({ url, key })
  process.exit(0)
}
