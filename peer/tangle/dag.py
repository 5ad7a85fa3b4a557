"""The tangle: a DAG of transactions in which every transaction approves its parents.

Everything here is iterative and bounded. A cumulative weight is 1 + the number of transactions that approve
a transaction directly or indirectly, counting only approvers at most `weight_horizon` heights above it:
walks start at most that deep below the tips, so the weights they read are exact, and a weight costs the
same at 10^3 and at 10^6 transactions. Weights are computed when first read after the tangle changed, all
of the top `weight_horizon` heights at once as future-cone bitsets (one Python int per transaction, built
approvers-first), so insertion does no weight work: in a tangle 1,000 wide, maintaining them on insertion
walked each new transaction's past cone (up to horizon x width transactions). With `weight_horizon=None`
(walks from genesis) every weight is exact and maintained on insertion, at O(past) per insertion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from peer.tangle.transaction import Transaction


class TangleError(ValueError):
    pass


class MissingParents(TangleError):
    def __init__(self, tx_id: str, missing: list[str]) -> None:
        super().__init__(f"{tx_id} has {len(missing)} parent(s) not in the tangle")
        self.missing = missing


class Tangle:
    def __init__(self, genesis: Transaction, *, weight_horizon: int | None = 64) -> None:
        if genesis.parents:
            raise TangleError("the genesis transaction has no parents")
        if weight_horizon is not None and weight_horizon < 1:
            raise TangleError("weight_horizon must be at least 1 (or None for exact weights)")
        self.genesis = genesis
        self.weight_horizon = weight_horizon
        self._transactions: dict[str, Transaction] = {}
        self._approvers: dict[str, list[str]] = {}
        self._height: dict[str, int] = {}
        self._weight: dict[str, int] = {}  # maintained on insertion only without a horizon
        # weights read since the tangle last changed: (its length then, top heights' weights, deeper ones)
        self._read_weights: tuple[int, dict[str, int], dict[str, int]] = (-1, {}, {})
        # dicts as ordered sets: iteration order must not depend on string hashing, or runs stop being
        # reproducible across processes
        self._tips: dict[str, None] = {}
        self._by_height: list[list[str]] = []
        self._insert(genesis, height=0)

    # --- queries -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._transactions)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._transactions

    def __iter__(self) -> Iterator[Transaction]:
        """Transactions in insertion order (every parent before its children)."""
        return iter(self._transactions.values())

    def get(self, tx_id: str) -> Transaction:
        return self._transactions[tx_id]

    @property
    def tips(self) -> list[str]:
        return list(self._tips)

    def approvers(self, tx_id: str) -> list[str]:
        return self._approvers[tx_id]

    def height(self, tx_id: str) -> int:
        """Length of the longest path from genesis."""
        return self._height[tx_id]

    @property
    def max_height(self) -> int:
        return len(self._by_height) - 1

    def depth(self, tx_id: str) -> int:
        """How many heights the transaction lies below the highest tip."""
        return self.max_height - self._height[tx_id]

    def at_height(self, height: int) -> list[str]:
        return self._by_height[height]

    def cumulative_weight(self, tx_id: str) -> int:
        horizon = self.weight_horizon
        if horizon is None:
            return self._weight[tx_id]
        top, deeper = self._weights_read(horizon)
        weight = top.get(tx_id)
        if weight is None:
            weight = deeper.get(tx_id)
        if weight is None:  # below the top heights: off a walk's usual path (its way back from genesis)
            limit = self._height[tx_id] + horizon
            weight = deeper[tx_id] = len(
                self._cone(tx_id, self._approvers.__getitem__, lambda t: self._height[t] <= limit)
            )
        return weight

    def missing_parents(self, tx: Transaction) -> list[str]:
        return [p for p in tx.parents if p not in self._transactions]

    def past_cone(self, tx_id: str, *, min_height: int = 0) -> set[str]:
        """The transaction and everything it approves, down to min_height."""
        return self._cone(tx_id, self._parents_of, lambda t: self._height[t] >= min_height)

    def future_cone(self, tx_id: str) -> set[str]:
        """The transaction and everything that approves it."""
        return self._cone(tx_id, self._approvers.__getitem__, lambda _t: True)

    def window(self, depth: int, *, top: int | None = None) -> list[str]:
        """Transactions at most `depth` heights below the highest tip (or below height `top`, and everything
        above it), lowest first."""
        start = max(0, (self.max_height if top is None else min(top, self.max_height)) - depth)
        return [t for h in range(start, self.max_height + 1) for t in self._by_height[h]]

    def weights_left_window(self, depth: int, since: int, *, top: int | None = None) -> tuple[int, list[str]]:
        """The window's floor (`max_height - depth`, or `top - depth`: see `window`) and the weights of the
        transactions at heights [since, floor) that neither the window nor the genesis shares: what no walk
        reads again once the floor passed them (a caller keeps the floor it got and passes it as `since`
        next time)."""
        floor = (self.max_height if top is None else min(top, self.max_height)) - depth
        if floor <= since:
            return since, []
        keep = {self._transactions[t].weights for t in self.window(depth, top=top)} | {self.genesis.weights}
        gone = [
            self._transactions[t].weights
            for h in range(since, floor)
            for t in self._by_height[h]
            if self._transactions[t].weights not in keep
        ]
        return floor, gone

    # --- insertion ---------------------------------------------------------------------------------------
    def add(self, tx: Transaction) -> bool:
        """Insert a transaction whose whole past is present; False if it was already there."""
        if tx.id in self._transactions:
            return False
        if tx.is_genesis:
            raise TangleError(f"{tx.id} has no parents but is not this tangle's genesis")
        missing = self.missing_parents(tx)
        if missing:
            raise MissingParents(tx.id, missing)
        height = 1 + max(self._height[p] for p in tx.parents)
        self._insert(tx, height)
        for parent in tx.parents:
            self._approvers[parent].append(tx.id)
            self._tips.pop(parent, None)
        if self.weight_horizon is None:
            self._add_weight_to_past(tx)
        return True

    def add_many(self, txs: Iterable[Transaction]) -> int:
        return sum(self.add(tx) for tx in txs)

    def _insert(self, tx: Transaction, height: int) -> None:
        self._transactions[tx.id] = tx
        self._approvers[tx.id] = []
        self._height[tx.id] = height
        self._tips[tx.id] = None
        if self.weight_horizon is None:
            self._weight[tx.id] = 1
        while len(self._by_height) <= height:
            self._by_height.append([])
        self._by_height[height].append(tx.id)

    def _add_weight_to_past(self, tx: Transaction) -> None:
        stack = list(tx.parents)
        seen = set(stack)
        while stack:
            current = stack.pop()
            self._weight[current] += 1
            for parent in self._transactions[current].parents:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)

    def _weights_read(self, horizon: int) -> tuple[dict[str, int], dict[str, int]]:
        """The top `horizon` heights' weights for the tangle as it is now (their future cones lie wholly
        inside those heights, so they are whole), and a memo of deeper weights read since it changed."""
        computed_at, top, deeper = self._read_weights
        if computed_at == len(self._transactions):
            return top, deeper
        ids = self.window(horizon)
        position = {t: i for i, t in enumerate(ids)}
        cones = [0] * len(ids)
        top = {}
        for i in range(len(ids) - 1, -1, -1):  # approvers (always higher) before what they approve
            cone = 1 << i
            for approver in self._approvers[ids[i]]:
                cone |= cones[position[approver]]
            cones[i] = cone
            top[ids[i]] = cone.bit_count()
        deeper = {}
        # one assignment: a reader on another thread sees the old triple or the new one
        self._read_weights = (len(self._transactions), top, deeper)
        return top, deeper

    def _parents_of(self, tx_id: str) -> tuple[str, ...]:
        return self._transactions[tx_id].parents

    @staticmethod
    def _cone(
        start: str, neighbours: Callable[[str], Iterable[str]], keep: Callable[[str], bool]
    ) -> set[str]:
        cone = {start}
        stack = [start]
        while stack:
            for nxt in neighbours(stack.pop()):
                if nxt not in cone and keep(nxt):
                    cone.add(nxt)
                    stack.append(nxt)
        return cone
