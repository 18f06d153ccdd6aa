import type { Socket, TCPSocketListener } from 'bun'

/**
 * A loopback TCP proxy a test can cut and restore, to make a real server (Postgres) vanish and come back
 * without touching the server itself.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  type Pair = { client: Socket<Pair>; upstream?: Socket<unknown>; pending: Uint8Array[] }
  const open = new Set<Pair>()
  let listener: TCPSocketListener<Pair> | undefined
  let port = 0

  const listen = () => {
    listener = Bun.listen<Pair>({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(client) {
          const pair: Pair = { client, pending: [] }
          client.data = pair
          open.add(pair)
          Bun.connect({
            hostname: target.host,
            port: target.port,
            socket: {
              open(upstream) {
                pair.upstream = upstream
                for (const chunk of pair.pending) upstream.write(chunk)
                pair.pending = []
              },
              data(_s, chunk) {
                client.write(chunk)
              },
              close() {
                client.end()
              },
              error() {
                client.end()
              },
            },
          }).catch(() => client.end())
        },
        data(client, chunk) {
          const pair = client.data
          if (pair.upstream) pair.upstream.write(chunk)
          else pair.pending.push(new Uint8Array(chunk))
        },
        close(client) {
          client.data.upstream?.end()
          open.delete(client.data)
        },
      },
    })
    port = listener.port
  }
  listen()

  return {
    get port() {
      return port
    },
    /** Drops every connection and refuses new ones. */
    cut() {
      listener?.stop(true)
      listener = undefined
      for (const pair of open) {
        pair.upstream?.terminate()
        pair.client.terminate()
      }
      open.clear()
    },
    /** Accepts again on the same port. */
    restore() {
      if (!listener) listen()
    },
    stop() {
      this.cut()
    },
  }
}
