"""Peer: python-redis-lock (SET NX EX to acquire; release runs a Lua script that also pushes
to a signal list; blocked waiters wake on BLPOP of that list)."""

import redis
import redis_lock

import peer_common

TTL_SECS = 10


def main():
    args = peer_common.parse_args()
    client = redis.StrictRedis.from_url(args.url)
    library = f"python-redis-lock {redis_lock.__version__}"
    if args.command == "uncontended":
        def cycle(name):
            lock = redis_lock.Lock(client, name, expire=TTL_SECS)
            if not lock.acquire(blocking=False):
                raise RuntimeError(f"fresh lock {name} was held")
            lock.release()

        peer_common.emit(library, peer_common.uncontended(cycle, args.iterations, args.warmup))
    else:
        def acquire(name):
            lock = redis_lock.Lock(client, name, expire=TTL_SECS)
            lock.acquire(blocking=True)
            return lock

        samples, elapsed, overlaps = peer_common.handoff(
            acquire, lambda lock: lock.release(), args.waiters, args.secs, args.max_handoffs
        )
        peer_common.emit(library, samples, elapsed, overlaps)


if __name__ == "__main__":
    main()
