"""The per-user Redis lock behind /events when Redis hangs: a SET that timed out may still be applied once Redis answers
again; the next hold releases that lock at once instead of leaving the user locked for the whole lease."""
import time
import uuid

import pytest
import redis

from recplugin.features.locks import RedisUserLocks
from tests.support.proxy import HangingProxy

pytestmark = pytest.mark.integration


def test_a_lock_taken_by_a_set_that_timed_out_is_released_once_redis_answers():
    proxy = HangingProxy("127.0.0.1", 6379)
    namespace = f"test-locks-{uuid.uuid4().hex[:8]}"
    key, direct = f"{namespace}:user-lock:7", redis.Redis(host="127.0.0.1", port=6379)
    locks = RedisUserLocks(f"127.0.0.1:{proxy.port}", namespace, timeout_s=0.5, lease_s=30.0)
    try:
        with locks.hold(8):  # a live connection first, as in a serving worker: the SET itself is what hangs
            pass
        proxy.hang()
        with pytest.raises(redis.TimeoutError):
            with locks.hold(7):
                pass
        proxy.resume()
        deadline = time.monotonic() + 5
        while not direct.exists(key):  # the unanswered SET reaches Redis now: user 7 is locked by nobody alive
            assert time.monotonic() < deadline, "the timed-out SET never reached Redis"
            time.sleep(0.05)
        began = time.monotonic()
        with locks.hold(7):
            assert direct.exists(key)
        assert time.monotonic() - began < 0.5 and not direct.exists(key)  # at once, not after the 30 s lease
    finally:
        direct.delete(key)
        proxy.close()
