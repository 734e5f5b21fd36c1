"""Peer: redis-py's built-in Lock (SET NX PX to acquire, a Lua script to release; blocking
acquire polls every `sleep` = 0.1 s, its default)."""

import redis

import peer_common

TTL_SECS = 10


def main():
    args = peer_common.parse_args()
    client = redis.Redis.from_url(args.url)
    library = f"redis-py {redis.__version__} Lock"
    if args.command == "uncontended":
        def cycle(name):
            lock = client.lock(name, timeout=TTL_SECS)
            if not lock.acquire(blocking=False):
                raise RuntimeError(f"fresh lock {name} was held")
            lock.release()

        peer_common.emit(library, peer_common.uncontended(cycle, args.iterations, args.warmup))
    else:
        def acquire(name):
            lock = client.lock(name, timeout=TTL_SECS)  # default sleep=0.1
            lock.acquire(blocking=True)
            return lock

        samples, elapsed, overlaps = peer_common.handoff(
            acquire, lambda lock: lock.release(), args.waiters, args.secs, args.max_handoffs
        )
        peer_common.emit(library, samples, elapsed, overlaps)


if __name__ == "__main__":
    main()
