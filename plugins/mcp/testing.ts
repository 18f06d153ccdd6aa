/** Test kit for the MCP plugin: the SDK's own client against a running server. */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ADMIN_KEY } from '../../test/helpers.ts'

export interface ConnectOptions {
  key?: string
  fetch?: typeof fetch
  headers?: Record<string, string>
}

/** An initialized MCP client on `${base}/mcp`. */
export async function connectMcp(base: string, opts: ConnectOptions = {}) {
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${opts.key ?? ADMIN_KEY}`, ...opts.headers } },
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  })
  const client = new Client({ name: 'gantry-test', version: '1.0.0' })
  await client.connect(transport)
  return { client, transport }
}

/** The text of a tool result's first content item. */
export const textOf = (result: any): string => {
  const first = result?.content?.[0]
  return first?.type === 'text' ? first.text : ''
}

export const jsonOf = (result: any): any => JSON.parse(textOf(result))

/** A raw POST to /mcp with the headers a Streamable HTTP client sends. */
export function postMcp(
  base: string,
  body: string,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
) {
  return fetch(`${base}/mcp`, {
    method: 'POST',
    signal,
    headers: {
      authorization: `Bearer ${ADMIN_KEY}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body,
  })
}

/** The JSON-RPC messages of an SSE or JSON answer. */
export async function rpcMessagesOf(res: Response): Promise<any[]> {
  const body = await res.text()
  if (!res.headers.get('content-type')?.includes('text/event-stream')) return [JSON.parse(body)]
  return body
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)))
}
