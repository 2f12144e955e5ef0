"""Every filter the parser accepts, up to its limit of conditions, runs on both stores."""

from __future__ import annotations

import pytest

from appliance.db.engine import Store
from appliance.hql.parser import MAX_CONDITIONS
from appliance.queue.query import count, search

N = MAX_CONDITIONS
SHAPES = {
    "or": " or ".join(f"from=a{i}@x.example" for i in range(N)),
    "and": " ".join(f"not size={i}" for i in range(N)),
    "or subject": " or ".join(f"subject~word{i}" for i in range(N)),
    "metadata keys ~": "(" * 50 + " or ".join(f"metadata.k{i}~v{i}" for i in range(N)) + ")" * 50,
    "metadata keys =": " or ".join(f"metadata.k{i}=v{i}" for i in range(N)),
    "metadata one key": " or ".join(f"metadata.k~v{i}" for i in range(N)),
    "mixed": " or ".join(f"(metadata.k=v{i} time>{i})" for i in range(N // 2)),
    "joined": " && ".join("queue=HOLD" for _ in range(N)),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_filters_at_the_limit_run(store: Store, shape: str) -> None:
    # SQLite refuses expressions deeper than 1,000 ("Expression tree is too large"); long
    # chains are compiled as balanced groups, so none of these reach it.
    with store.transaction(read_only=True) as session:
        assert search(session, SHAPES[shape], offset=0, limit=10) == ([], None)
        assert count(session, SHAPES[shape]) == 0
