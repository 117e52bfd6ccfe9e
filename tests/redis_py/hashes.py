"""Redis hashes through redis-py, unchanged: run by tests/it/resp.rs
against a ringkv node's RESP port (the port is the only argument)."""

import sys

import redis


def refused(call, needle):
    try:
        call()
    except redis.ResponseError as error:
        assert needle in str(error), f"{error!r} should say {needle!r}"
        return
    raise AssertionError(f"expected an error saying {needle!r}")


def main(port):
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    r.delete("user:1", "big", "s", "p")

    assert r.hset("user:1", mapping={"name": "ada", "lang": "en"}) == 2
    assert r.hset("user:1", "city", "london") == 1
    assert r.hget("user:1", "name") == "ada"
    assert r.hget("user:1", "zip") is None
    assert r.hmget("user:1", ["name", "zip", "city"]) == ["ada", None, "london"]
    assert r.hgetall("user:1") == {"name": "ada", "lang": "en", "city": "london"}
    assert r.hkeys("user:1") == ["city", "lang", "name"], "fields in order"
    assert r.hvals("user:1") == ["london", "en", "ada"]
    assert r.hlen("user:1") == 3
    assert r.hexists("user:1", "name") and not r.hexists("user:1", "zip")
    assert r.hstrlen("user:1", "city") == 6
    assert r.type("user:1") == "hash"

    # More fields than one batch holds, scanned a page at a time.
    r.hset("big", mapping={f"f{i:03}": str(i) for i in range(250)})
    assert r.hlen("big") == 250
    scanned = dict(r.hscan_iter("big", count=17))
    assert scanned == {f"f{i:03}": str(i) for i in range(250)}, len(scanned)
    matched = dict(r.hscan_iter("big", match="f1[0-4]*", count=40))
    assert matched == {f"f{i}": str(i) for i in range(100, 150)}, sorted(matched)

    assert r.hdel("user:1", "lang", "lang") == 1
    assert r.hgetall("user:1") == {"name": "ada", "city": "london"}

    # Types: a read of the other type is WRONGTYPE.
    r.set("s", "v")
    assert r.type("s") == "string"
    refused(lambda: r.hget("s", "f"), "WRONGTYPE")
    refused(lambda: r.hgetall("s"), "WRONGTYPE")
    refused(lambda: r.get("user:1"), "WRONGTYPE")
    assert r.ttl("user:1") == -1
    assert r.exists("user:1", "s", "nothing") == 2
    assert r.type("nothing") == "none"

    # DEL removes the whole hash.
    assert r.delete("user:1") == 1
    assert r.hgetall("user:1") == {}
    assert r.exists("user:1") == 0

    # What needs compare-and-set is refused, never half-done.
    refused(lambda: r.hincrby("big", "f001", 1), "compare-and-set")
    refused(lambda: r.hsetnx("big", "new", "1"), "compare-and-set")
    refused(lambda: r.hset("big", "", "empty"), "cannot be empty")

    # A pipeline: the write, then the read of it.
    pipe = r.pipeline(transaction=False)
    pipe.hset("p", "a", "1")
    pipe.hgetall("p")
    assert pipe.execute() == [1, {"a": "1"}]

    # RESP3: HGETALL is a map.
    r3 = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, protocol=3)
    assert r3.hgetall("big")["f007"] == "7"
    print("redis-py hashes: ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
